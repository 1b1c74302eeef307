// Package leaktest checks that secrets never reach the logs or a wallet
// file in clear. It holds tests only.
package leaktest

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/cosmos/go-bip39"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/sipconn"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

const (
	domain   = "paysip.test"
	price    = 60_000
	password = "correct-horse-battery-staple-42"
)

// syncBuffer is a log sink shared by every component of the call.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// secret is one thing that must not be logged, under a name for the
// failure message.
type secret struct{ name, value string }

// walletSecrets lists a wallet's secrets: its mnemonic, every run of three
// of its words, its BIP32 master key, and the channel keys of the indices
// it used (hex and WIF, compressed and not).
func walletSecrets(t *testing.T, who string, w *wallet.Wallet, used uint32) []secret {
	t.Helper()
	m := w.Mnemonic()
	out := []secret{{who + " mnemonic", m}}
	words := strings.Fields(m)
	for i := 0; i+3 <= len(words); i++ {
		out = append(out, secret{who + " mnemonic words " + strings.Join(words[i:i+3], " "), strings.Join(words[i:i+3], " ")})
	}
	seed := bip39.NewSeed(m, "")
	master, err := hdkeychain.NewMaster(seed, w.Params())
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, secret{who + " BIP32 master key", master.String()}, secret{who + " BIP39 seed", hex.EncodeToString(seed)})
	for i := uint32(0); i <= used; i++ {
		k, err := w.ChannelKeyAt(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, compressed := range []bool{true, false} {
			wif, err := btcutil.NewWIF(k, w.Params(), compressed)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, secret{who + " channel key WIF", wif.String()})
		}
		out = append(out, secret{who + " channel key hex", hex.EncodeToString(k.Serialize())})
	}
	return out
}

// TestNoSecretsInLogs runs a full paid call with authentication (payer,
// payee, SIP server, real regtest node), every component logging at debug
// level into one buffer (sipgo's own logger too), then looks in it for
// every secret: the wallets' mnemonics (and any three words in a row),
// master keys and channel keys (hex and WIF), the account password, the
// digest HA1s of both accounts, and the server's nonce secret. None may
// appear.
func TestNoSecretsInLogs(t *testing.T) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sip.SetDefaultLogger(log)
	t.Cleanup(func() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) })

	env := regtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	accounts, err := store.Open(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer accounts.Close()
	for _, u := range []string{"tutor", "caller"} {
		if err := accounts.AddUser(ctx, u, domain, password); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := sipserver.New(sipserver.Config{Domain: domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Accounts: accounts, Chain: env.Chain, Log: log, DigestAlgorithms: []string{"SHA-256", "MD5"}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	<-srv.Ready()
	proxy := "127.0.0.1:" + strconv.Itoa(srv.SIPPort())

	openStore := func(name string) *store.DB {
		db, err := store.Open(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	payerW, _ := env.NewWallet("payer", "")
	payeeW, _ := env.NewWallet("payee", "")
	a, _ := payerW.NewAddress()
	env.Fund(a, 1_000_000)
	payer := &agent.Payer{Wallet: payerW, Chain: env.Chain, Store: openStore("payer.db"), CapacitySat: 200_000, MaxPriceSatPerMin: 60_000, Log: log}
	payee := &agent.Payee{Wallet: payeeW, Chain: env.Chain, Store: openStore("payee.db"), PriceSatPerMin: price, Poll: 20 * time.Millisecond, Log: log, FeeHeadroom: 1}

	ua := func(user string) *sipua.UA {
		u, err := sipua.New(sipua.Config{AOR: "sip:" + user + "@" + domain, Proxy: proxy, Username: user, Password: password, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	tutor := ua("tutor")
	if err := tutor.KeepRegistered(ctx, 300, &sipua.Offer{PriceSatPerMin: price, Name: "Tutor"}); err != nil {
		t.Fatal(err)
	}
	served := make(chan *agent.PayeeResult, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		call, err := ic.Answer([]byte("v=0\r\n"))
		if err != nil {
			served <- nil
			return
		}
		go func() {
			res, _ := payee.Serve(ctx, sipconn.New(call), ic.Request.From().Address.String())
			served <- res
		}()
	})
	var to sip.Uri
	sip.ParseUri("sip:tutor@"+domain, &to)
	call, err := ua("caller").Call(ctx, to, []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := payer.Open(ctx, sipconn.New(call), "sip:tutor@"+domain)
	if err != nil {
		t.Fatal(err)
	}
	for sec := int64(1); sec <= 3; sec++ {
		owed, _ := channel.Owed(price, sec)
		if err := s.Pay(ctx, owed); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Close(ctx, "hangup"); err != nil {
		t.Fatal(err)
	}
	call.Hangup(ctx)
	res := <-served
	if res == nil || res.SettlementTxID == "" {
		t.Fatalf("the call did not settle: %+v", res)
	}

	text := logs.String()
	// The logs are really there, at debug level, from every side.
	for _, want := range []string{"level=DEBUG", "component=sip", "component=payer", "component=payee", s.Channel().ID(), "REGISTER"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the captured logs lack %q: not a full debug capture (%d bytes)", want, len(text))
		}
	}
	secrets := append(walletSecrets(t, "payer", payerW, 1), walletSecrets(t, "payee", payeeW, 1)...)
	secrets = append(secrets, secret{"account password", password})
	for _, u := range []string{"tutor", "caller"} {
		for _, alg := range []string{"MD5", "SHA-256"} {
			ha1, ok := accounts.UserHA1(ctx, u, domain, alg)
			if !ok {
				t.Fatalf("no %s HA1 for %s", alg, u)
			}
			secrets = append(secrets, secret{u + " HA1 " + alg, ha1})
		}
	}
	nonceSecret := reflect.ValueOf(srv).Elem().FieldByName("auth").Elem().FieldByName("Secret").Bytes()
	if len(nonceSecret) < 16 {
		t.Fatalf("nonce secret of %d bytes", len(nonceSecret))
	}
	secrets = append(secrets, secret{"nonce secret (hex)", hex.EncodeToString(nonceSecret)}, secret{"nonce secret (raw)", string(nonceSecret)})
	leaks := 0
	for _, sc := range secrets {
		for _, v := range []string{sc.value, strings.ToUpper(sc.value)} {
			if i := strings.Index(text, v); i >= 0 {
				leaks++
				t.Errorf("%s is in the logs: ...%s...", sc.name, text[max(0, i-120):min(len(text), i+len(v)+40)])
				break
			}
		}
	}
	t.Logf("%d bytes of debug logs from a paid call, %d secrets looked for, %d found", len(text), len(secrets), leaks)
}

// TestWalletFileEncrypted: with a passphrase (PAYSIP_WALLET_PASSPHRASE in
// the commands) the wallet file holds the mnemonic encrypted: neither it,
// nor any three of its words in a row, nor its seed or master key are in
// the file; the file opens with the passphrase and not without it. The
// same check finds the mnemonic in a wallet made without a passphrase (so
// it can fail).
func TestWalletFileEncrypted(t *testing.T) {
	dir := t.TempDir()
	off := chain.Offline{Net: &chaincfg.RegressionNetParams}
	path := filepath.Join(dir, "wallet.json")
	w, mnemonic, err := wallet.Create(path, off, "a passphrase")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if found := inClear(t, string(b), w); len(found) > 0 {
		t.Fatalf("the encrypted wallet file holds in clear: %v\n%s", found, b)
	}
	if _, err := wallet.Open(path, off, ""); err == nil {
		t.Fatal("the encrypted wallet opened without its passphrase")
	}
	if _, err := wallet.Open(path, off, "another"); err == nil {
		t.Fatal("the encrypted wallet opened with a wrong passphrase")
	}
	if again, err := wallet.Open(path, off, "a passphrase"); err != nil || again.Mnemonic() != mnemonic {
		t.Fatalf("reopening with the passphrase: %v", err)
	}

	plainPath := filepath.Join(dir, "plain.json")
	pw, _, err := wallet.Create(plainPath, off, "")
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := os.ReadFile(plainPath)
	if len(inClear(t, string(pb), pw)) == 0 {
		t.Fatal("the check finds nothing in a wallet file without passphrase, which holds its mnemonic in clear")
	}
}

func inClear(t *testing.T, file string, w *wallet.Wallet) []string {
	var found []string
	for _, sc := range walletSecrets(t, "wallet", w, 0) {
		if strings.Contains(file, sc.value) {
			found = append(found, sc.name)
		}
	}
	return found
}
