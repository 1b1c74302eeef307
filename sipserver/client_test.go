package sipserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/wallet"
)

// SIPRoundTrip is the chainapi.RoundTrip of a Go user agent: a MESSAGE to
// sip:bitcoin@DOMAIN, answered with the body of any final answer that
// carries one.
func SIPRoundTrip(u *sipua.UA) chainapi.RoundTrip {
	return func(ctx context.Context, body []byte) ([]byte, error) {
		res, err := u.Message(ctx, uri("sip:bitcoin@"+domain), ct, body)
		if err != nil {
			return nil, err
		}
		if c := res.ContentType(); c == nil || !strings.HasPrefix(c.Value(), ct) || len(res.Body()) == 0 {
			return nil, fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
		return res.Body(), nil
	}
}

// regtestFaucet pays from the test node's faucet wallet and mines a block.
type regtestFaucet struct{ env *regtest.Env }

func (f regtestFaucet) Pay(ctx context.Context, script []byte, amount int64) (string, error) {
	addr, err := f.env.Faucet.Address(script)
	if err != nil {
		return "", err
	}
	tx, err := f.env.Faucet.Send(ctx, addr, amount, regtest.FeeRate)
	if err != nil {
		return "", err
	}
	f.env.Mine(1)
	return tx.TxHash().String(), nil
}

type memWallet struct{ doc []byte }

func (m *memWallet) Load() ([]byte, error) {
	if m.doc == nil {
		return nil, fs.ErrNotExist
	}
	return m.doc, nil
}
func (m *memWallet) Save(b []byte) error { m.doc = append([]byte(nil), b...); return nil }
func (m *memWallet) String() string      { return "memory" }

// TestBitcoinAPIClient: chainapi.Client over SIP, as an anonymous caller
// (From at anonymous.invalid: no challenge), answers what the node says,
// for every method a wallet and the agents use: a wallet on it is funded
// by the regtest faucet, sends, sees its coins, and a restored copy finds
// its used addresses.
func TestBitcoinAPIClient(t *testing.T) {
	env := regtest.New(t)
	r := startServer(t, func(c *sipserver.Config) { c.Chain = env.Chain; c.APIRate = 200 })
	if err := r.srv.EnableFaucet(regtestFaucet{env}, 2_000_000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	anon, err := sipua.New(sipua.Config{AOR: "sip:anonymous.k3x9@anonymous.invalid", Proxy: r.proxy()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	c := chainapi.NewClient(env.Chain.Params(), SIPRoundTrip(anon))

	tip, err := c.TipHeight(ctx)
	if want, _ := env.Chain.TipHeight(ctx); err != nil || tip != want {
		t.Fatalf("tip %d %v, node %d", tip, err, want)
	}
	if rate, err := c.FeeRate(ctx, 6); err != nil || rate <= 0 {
		t.Fatalf("fee %d %v", rate, err)
	}

	st := &memWallet{}
	w, mnemonic, err := wallet.CreateIn(st, c, "pw")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := w.NewAddress()
	script, _ := txscript.PayToAddrScript(addr)
	// The faucet: bounded per request, paid and confirmed.
	var api *chainapi.APIError
	if _, err := c.Faucet(ctx, script, 2_000_001); !errors.As(err, &api) || api.Code != "limit" {
		t.Fatalf("faucet above its cap: %v", err)
	}
	txid, err := c.Faucet(ctx, script, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.Balance(ctx)
	if err != nil || b.Confirmed != 1_000_000 {
		t.Fatalf("balance after the faucet: %+v %v", b, err)
	}

	// Coins of many scripts: the same as the node's, with their scripts.
	more, _ := w.NewScript()
	scripts := [][]byte{script, more}
	got, err := c.Coins(ctx, scripts)
	want, _ := env.Chain.Coins(ctx, scripts)
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got, want) {
		t.Fatalf("coins %+v %v, node %+v", got, err, want)
	}
	if got[0].Outpoint.Hash.String() != txid {
		t.Fatalf("coin %v is not the faucet's %s", got[0].Outpoint, txid)
	}
	// tx reads the faucet's transaction back.
	ftx, err := c.Tx(ctx, got[0].Outpoint.Hash)
	if err != nil || ftx.TxHash().String() != txid {
		t.Fatalf("tx: %v", err)
	}
	// spend_of: unspent, then spent by the wallet's send.
	if sp, err := c.SpendOf(ctx, got[0].Outpoint, script); err != nil || sp != nil {
		t.Fatalf("spend of an unspent coin: %+v %v", sp, err)
	}
	back, _ := env.Faucet.NewAddress()
	rate, _ := c.FeeRate(ctx, 6)
	sent, err := w.Send(ctx, back, 300_000, rate)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := c.SpendOf(ctx, got[0].Outpoint, script)
	if err != nil || sp == nil || sp.TxID != sent.TxHash() || sp.Tx == nil || sp.Confirmations != 0 {
		t.Fatalf("spend_of after the send: %+v %v", sp, err)
	}
	if st, err := c.TxStatus(ctx, sent.TxHash()); err != nil || !st.Known || st.Confirmations != 0 {
		t.Fatalf("tx_status %+v %v", st, err)
	}
	// The wallet spends its own unconfirmed change (read back by tx).
	spendable, err := w.SpendableCoins(ctx)
	if err != nil || len(spendable) != 1 {
		t.Fatalf("own unconfirmed change not spendable: %v %v", spendable, err)
	}
	// Broadcasting again: already known is success; a conflict is coded.
	if err := c.Broadcast(ctx, sent); err != nil {
		t.Fatalf("rebroadcast: %v", err)
	}
	double := sent.Copy()
	double.TxOut[0].Value -= 1000
	if err := c.Broadcast(ctx, double); !errors.Is(err, chain.ErrConflict) && !errors.Is(err, chain.ErrRejected) {
		t.Fatalf("a double spend (unsigned change): %v", err)
	}
	env.Mine(1)

	// used: a restored wallet finds its addresses (gap limit) through the
	// API, and with them its coins.
	used, err := c.Used(ctx, [][]byte{script, more})
	if err != nil || !reflect.DeepEqual(used, []bool{true, false}) {
		t.Fatalf("used %v %v", used, err)
	}
	w2, err := wallet.RestoreIn(ctx, &memWallet{}, c, mnemonic, "", true)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := w.Balance(ctx)
	b2, err := w2.Balance(ctx)
	if err != nil || b2 != b1 || b1.Confirmed != 1_000_000-300_000-feeOf(t, env, sent) {
		t.Fatalf("restored balance %+v %v, original %+v", b2, err, b1)
	}
}

func feeOf(t *testing.T, env *regtest.Env, tx *wire.MsgTx) int64 {
	var in int64
	for _, i := range tx.TxIn {
		prev, err := env.Chain.Tx(context.Background(), i.PreviousOutPoint.Hash)
		if err != nil {
			t.Fatal(err)
		}
		in += prev.TxOut[i.PreviousOutPoint.Index].Value
	}
	for _, o := range tx.TxOut {
		in -= o.Value
	}
	return in
}

// TestBitcoinAPILimits: the new requests' bounds, answered with codes: too
// many scripts (400), no faucet on a server without one, the faucet's own
// rate per source, and anonymous callers limited by their address.
func TestBitcoinAPILimits(t *testing.T) {
	env := regtest.New(t)
	r := startServer(t, func(c *sipserver.Config) { c.Chain = env.Chain; c.APIRate = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := r.ua("alice", true)
	tooMany := `{"v":1,"type":"used","scripts":[` + strings.Repeat(`"0014`+strings.Repeat("00", 20)+`",`, chainapi.MaxScripts) + `"00"]}`
	if res, a := apiCall(t, ctx, alice, tooMany); res.StatusCode != 400 || a.Code != "bad_request" {
		t.Fatalf("too many scripts: %d %+v", res.StatusCode, a)
	}
	// A script paying no address is the asker's mistake (400), never a
	// node error; as a watch it would have failed every user's polls.
	for _, body := range []string{`{"v":1,"type":"coins","scripts":["00"]}`, `{"v":1,"type":"watch","script":"6a0100"}`,
		`{"v":1,"type":"spend_of","outpoint":"` + strings.Repeat("ab", 32) + `:0","script":"51"}`} {
		time.Sleep(time.Second)
		if res, a := apiCall(t, ctx, alice, body); res.StatusCode != 400 || a.Code != "bad_request" {
			t.Fatalf("%s: %d %+v", body, res.StatusCode, a)
		}
	}
	time.Sleep(time.Second)
	if res, a := apiCall(t, ctx, alice, `{"v":1,"type":"faucet","script":"0014`+strings.Repeat("00", 20)+`","amount_sat":1000}`); res.StatusCode != 403 || a.Code != "no_faucet" {
		t.Fatalf("faucet without one: %d %+v", res.StatusCode, a)
	}
	// An anonymous caller is served without a challenge, within its
	// source's allowance (rate 2/s, burst 4: shared with alice here, as
	// both come from 127.0.0.1).
	anon, err := sipua.New(sipua.Config{AOR: "sip:anonymous@anonymous.invalid", Proxy: r.proxy()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	// It watches by SUBSCRIBE only: it has no contacts to MESSAGE.
	time.Sleep(2 * time.Second)
	if res, a := apiCall(t, ctx, anon, `{"v":1,"type":"watch","script":"0014`+strings.Repeat("00", 20)+`"}`); res.StatusCode != 403 || a.Code != "limit" {
		t.Fatalf("anonymous watch by MESSAGE: %d %+v", res.StatusCode, a)
	}
	limited := false
	for i := 0; i < 12 && !limited; i++ {
		res, err := anon.Message(ctx, uri("sip:bitcoin@"+domain), ct, []byte(`{"v":1,"type":"tip"}`))
		if err != nil {
			t.Fatal(err)
		}
		switch res.StatusCode {
		case 200:
		case 503:
			limited = res.GetHeader("Retry-After") != nil
		default:
			t.Fatalf("anonymous request: %s", res.String())
		}
	}
	if !limited {
		t.Fatal("twelve anonymous requests at once, and no rate limit")
	}

	// The faucet's own limit: FaucetBurst payments, then 503 rate_limit.
	if err := r.srv.EnableFaucet(regtestFaucet{env}, 0); err != nil {
		t.Fatal(err)
	}
	w, _ := env.NewWallet("w", "")
	addr, _ := w.NewAddress()
	body, _ := json.Marshal(chainapi.Request{V: 1, Type: chainapi.TypeFaucet, Address: addr.EncodeAddress(), AmountSat: 10_000})
	// Over UDP from an address nothing proved (it may be spoofed): no.
	udp, err := sipua.New(sipua.Config{AOR: "sip:anonymous@anonymous.invalid", Proxy: r.proxy(), Transport: "udp"})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	time.Sleep(1100 * time.Millisecond)
	if res, a := apiCall(t, ctx, udp, string(body)); res.StatusCode != 403 || a.Code != "limit" {
		t.Fatalf("faucet over unproven UDP: %d %+v", res.StatusCode, a)
	}
	paid := 0
	for i := 0; i < sipserver.FaucetBurst+2; i++ {
		time.Sleep(1100 * time.Millisecond) // the API's own rate, and the faucet's global one
		res, a := apiCall(t, ctx, alice, string(body))
		if res.StatusCode == 200 {
			paid++
			continue
		}
		if res.StatusCode != 503 || a.Code != "rate_limit" || res.GetHeader("Retry-After") == nil {
			t.Fatalf("faucet request %d: %d %+v", i, res.StatusCode, a)
		}
		break
	}
	if paid != sipserver.FaucetBurst {
		t.Fatalf("faucet paid %d times in a row, want %d", paid, sipserver.FaucetBurst)
	}
}

// TestFaucetRegtestOnly: a faucet cannot be enabled on another network.
func TestFaucetRegtestOnly(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Chain = chain.Offline{Net: &chaincfg.MainNetParams} })
	if err := r.srv.EnableFaucet(nil, 0); !errors.Is(err, sipserver.ErrFaucetNotRegtest) {
		t.Fatalf("faucet on mainnet: %v", err)
	}
}
