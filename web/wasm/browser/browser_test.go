//go:build !(js && wasm)

package browser_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/web/wasm/browser"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

type memWallet struct{ doc []byte }

func (m *memWallet) Load() ([]byte, error) {
	if m.doc == nil {
		return nil, fs.ErrNotExist
	}
	return m.doc, nil
}
func (m *memWallet) Save(b []byte) error { m.doc = append([]byte(nil), b...); return nil }
func (m *memWallet) String() string      { return "memory" }

// sipAPI starts a sipserver with a faucet on env's node and returns the
// round trip of an anonymous user agent to its SIP API.
func sipAPI(t *testing.T, env *regtest.Env) chainapi.RoundTrip {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "paysip.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv, err := sipserver.New(sipserver.Config{Domain: "paysip.test", SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Accounts: db,
		Chain: env.Chain, APIRate: 500, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.EnableFaucet(faucet{env}, 5_000_000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	ua, err := sipua.New(sipua.Config{AOR: "sip:anonymous.test@anonymous.invalid", Proxy: fmt.Sprintf("127.0.0.1:%d", srv.SIPPort())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	var to sip.Uri
	sip.ParseUri("sip:bitcoin@paysip.test", &to)
	return func(ctx context.Context, body []byte) ([]byte, error) {
		res, err := ua.Message(ctx, to, "application/vnd.paysip+json", body)
		if err != nil {
			return nil, err
		}
		if len(res.Body()) == 0 {
			return nil, fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
		return res.Body(), nil
	}
}

// page is one browser page's storage: what survives a reload.
type page struct {
	wallet   *memWallet
	channels *kvstore.Mem
}

func newApp(t *testing.T, p page, rt chainapi.RoundTrip) *browser.App {
	t.Helper()
	a, err := browser.New(browser.Config{Network: "regtest", Domain: "paysip.test", RoundTrip: rt, Wallet: p.wallet, Channels: p.channels,
		Poll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPagesPayAndReload: two pages (the browser's app, natively, on the
// chain client over SIP) pay each other on a real node. The payee page
// loses the chain as the call ends (its settlement cannot go out), is
// reloaded, unlocks, and settleOpen settles what it acknowledged; the
// settlement pays the payer back the capacity less what was paid.
func TestPagesPayAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a regtest node: skipped with -short")
	}
	env := regtest.New(t)
	rt := sipAPI(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	payerPage := page{&memWallet{}, &kvstore.Mem{}}
	payer := newApp(t, payerPage, rt)
	if _, err := payer.Balance(ctx); browser.Code(err) != browser.CodeNoWallet {
		t.Fatalf("balance before a wallet: %v (%s)", err, browser.Code(err))
	}
	if _, err := payer.CreateWallet("pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := payer.Faucet(ctx, 1_000_000); err != nil {
		t.Fatal(err)
	}
	// The payee page's chain can be cut (its node unreachable).
	var cut atomic.Bool
	payeeRT := func(ctx context.Context, b []byte) ([]byte, error) {
		if cut.Load() {
			return nil, errors.New("WebSocket closed")
		}
		return rt(ctx, b)
	}
	payeePage := page{&memWallet{}, &kvstore.Mem{}}
	payee := newApp(t, payeePage, payeeRT)
	if _, err := payee.CreateWallet(""); err != nil {
		t.Fatal(err)
	}
	if _, err := payee.Offer("sip:tutor@paysip.test", sipext.Offer{PriceSatPerMin: 60_000}); err != nil {
		t.Fatal(err)
	}

	// Over a price ceiling below the payee's: refused before funding.
	c1, c2 := agent.Pipe()
	go payee.Serve(ctx, c2, "sip:alice@paysip.test", nil)
	_, err := payer.Pay(ctx, c1, browser.PayOptions{Peer: "sip:tutor@paysip.test", Plan: paidcall.Plan{PriceSatPerMin: 30_000, Seconds: 3}})
	if browser.Code(err) != browser.CodePriceAboveLimit {
		t.Fatalf("price above the limit: %v (%s)", err, browser.Code(err))
	}
	c1.Close()

	a, b := agent.Pipe()
	var held atomic.Int64
	served := make(chan *agent.PayeeResult, 1)
	go func() {
		res, _, err := payee.Serve(ctx, b, "sip:alice@paysip.test", func(p browser.Payment) {
			held.Store(p.PaidSat)
			if p.PaidSat >= 3_000 {
				cut.Store(true) // the page loses the chain before the call ends
			}
		})
		if err != nil {
			t.Logf("payee session: %v", err)
		}
		served <- res
	}()
	res, err := payer.Pay(ctx, a, browser.PayOptions{Peer: "sip:tutor@paysip.test", Plan: paidcall.Plan{PriceSatPerMin: 60_000, Seconds: 4}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	pr := <-served
	if res.PaidSat != 4_000 || held.Load() != res.PaidSat {
		t.Fatalf("paid %d, the payee page held %d", res.PaidSat, held.Load())
	}
	if pr != nil && pr.SettlementTxID != "" {
		t.Fatalf("settled without a chain: %+v", pr)
	}

	// The reload: a new app on the same storage, the chain back.
	cut.Store(false)
	reloaded := newApp(t, payeePage, payeeRT)
	if _, err := reloaded.Balance(ctx); browser.Code(err) != browser.CodeLocked {
		t.Fatalf("balance after a reload: %v (%s)", err, browser.Code(err))
	}
	if err := reloaded.Unlock("wrong"); browser.Code(err) != browser.CodeBadPassphrase {
		t.Fatalf("unlock with a wrong passphrase: %v", err)
	}
	if err := reloaded.Unlock(""); err != nil {
		t.Fatal(err)
	}
	settled, err := reloaded.SettleOpen(ctx)
	if err != nil || len(settled) != 1 || settled[0].ChannelID != res.ChannelID {
		t.Fatalf("settleOpen: %+v %v", settled, err)
	}
	h, _ := chainhash.NewHashFromStr(settled[0].TxID)
	tx, err := env.Chain.Tx(ctx, *h)
	if err != nil {
		t.Fatalf("settlement not on the node: %v", err)
	}
	back := false
	for _, o := range tx.TxOut {
		back = back || o.Value == res.CapacitySat-res.PaidSat
	}
	if !back || tx.TxIn[0].PreviousOutPoint.String() != res.ChannelID {
		t.Fatalf("settlement %v does not return %d to the payer from %s", tx.TxOut, res.CapacitySat-res.PaidSat, res.ChannelID)
	}
	// Nothing left: a second settleOpen settles nothing; the payer's
	// refund watch recognises the settlement once mined.
	if again, err := reloaded.SettleOpen(ctx); err != nil || len(again) != 0 {
		t.Fatalf("second settleOpen: %+v %v", again, err)
	}
	env.Mine(1)
	if _, err := payer.WatchRefunds(ctx); err != nil {
		t.Fatal(err)
	}
	chs, err := payer.Channels(ctx)
	if err != nil || len(chs) == 0 || chs[0].ChannelID != res.ChannelID || chs[0].State != string(store.StateSettled) {
		t.Fatalf("payer's channels after the settlement: %+v %v", chs, err)
	}
}

// TestPageRefund: a payee page vanishes with the pool unsettled; once the
// chain reaches the refund's lock time, the payer page's watchRefunds
// takes its refund through the SIP API, and the channel ends refunded.
func TestPageRefund(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a regtest node: skipped with -short")
	}
	env := regtest.New(t)
	rt := sipAPI(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	payer := newApp(t, page{&memWallet{}, &kvstore.Mem{}}, rt)
	if _, err := payer.CreateWallet(""); err != nil {
		t.Fatal(err)
	}
	// An empty wallet cannot pay: refused before a word is sent.
	c1, c2 := agent.Pipe()
	defer c2.Close()
	if _, err := payer.Pay(ctx, c1, browser.PayOptions{Peer: "sip:tutor@paysip.test", Plan: paidcall.Plan{PriceSatPerMin: 60_000, Seconds: 2}}); browser.Code(err) != browser.CodeNoFunds {
		t.Fatalf("paying from an empty wallet: %v (%s)", err, browser.Code(err))
	}
	if _, err := payer.Faucet(ctx, 1_000_000); err != nil {
		t.Fatal(err)
	}
	var gone atomic.Bool // the payee page's tab closed
	payee := newApp(t, page{&memWallet{}, &kvstore.Mem{}}, func(ctx context.Context, b []byte) ([]byte, error) {
		if gone.Load() {
			return nil, errors.New("tab closed")
		}
		return rt(ctx, b)
	})
	if _, err := payee.CreateWallet(""); err != nil {
		t.Fatal(err)
	}
	payee.Offer("", sipext.Offer{PriceSatPerMin: 60_000})
	a, b := agent.Pipe()
	go payee.Serve(ctx, b, "sip:alice@paysip.test", func(p browser.Payment) {
		if p.PaidSat >= 2_000 {
			gone.Store(true)
		}
	})
	res, err := payer.Pay(ctx, a, browser.PayOptions{Peer: "sip:tutor@paysip.test", Plan: paidcall.Plan{PriceSatPerMin: 60_000, Seconds: 2}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	// Before the lock: nothing to take.
	if got, err := payer.WatchRefunds(ctx); err != nil || len(got) != 0 {
		t.Fatalf("refunds before the lock: %+v %v", got, err)
	}
	chs, _ := payer.Channels(ctx)
	tip, _ := env.Chain.TipHeight(ctx)
	env.Mine(chs[0].ExpiryHeight - uint32(tip))
	got, err := payer.WatchRefunds(ctx)
	if err != nil || len(got) != 1 || got[0].ChannelID != res.ChannelID {
		t.Fatalf("refunds at the lock: %+v %v", got, err)
	}
	h, _ := chainhash.NewHashFromStr(got[0].TxID)
	if st, err := env.Chain.TxStatus(ctx, *h); err != nil || !st.Known {
		t.Fatalf("refund not on the node: %+v %v", st, err)
	}
	env.Mine(1)
	payer.WatchRefunds(ctx)
	chs, err = payer.Channels(ctx)
	if err != nil || chs[0].State != string(store.StateRefunded) || chs[0].CloseTxID != got[0].TxID {
		t.Fatalf("payer's channel after its refund: %+v %v", chs, err)
	}
}
