//go:build !(js && wasm)

package browser_test

import (
	"context"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/web/wasm/browser"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

// TestPageHangup: a call of set length, then one of no set length that
// the page hangs up (its context ends): both settled, with close, at what
// was paid.
func TestPageHangup(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a regtest node: skipped with -short")
	}
	env := regtest.New(t)
	rt := sipAPI(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payer := newApp(t, page{&memWallet{}, &kvstore.Mem{}}, rt)
	payer.CreateWallet("")
	if _, err := payer.Faucet(ctx, 1_000_000); err != nil {
		t.Fatal(err)
	}
	payee := newApp(t, page{&memWallet{}, &kvstore.Mem{}}, rt)
	payee.CreateWallet("")
	payee.Offer("", sipext.Offer{PriceSatPerMin: 60_000})
	for n, seconds := range []int64{3, 0} {
		// The first funding's change confirmed: a payee takes a funding
		// at once only when its parents are confirmed.
		env.Mine(1)
		a, b := agent.Pipe()
		served := make(chan *agent.PayeeResult, 1)
		go func() {
			r, _, err := payee.Serve(ctx, b, "sip:alice@paysip.test", nil)
			if err != nil {
				t.Logf("serve %d: %v", n, err)
			}
			served <- r
		}()
		cctx, hang := context.WithCancel(ctx)
		res, err := payer.Pay(cctx, a, browser.PayOptions{Peer: "sip:tutor@paysip.test", Plan: paidcall.Plan{PriceSatPerMin: 60_000, Seconds: seconds, Close: true},
			OnTick: func(tk agent.Tick) {
				if seconds == 0 && tk.PaidSat >= 2_000 {
					hang()
				}
			}})
		hang()
		if err != nil {
			t.Fatalf("call %d: %v", n, err)
		}
		r := <-served
		if res.Closed == nil || r == nil || res.Closed.SettlementTxID != r.SettlementTxID || r.PaidSat != res.PaidSat {
			t.Fatalf("call %d not settled: %+v %+v", n, res, r)
		}
		if seconds == 0 && res.End != paidcall.EndHangup {
			t.Fatalf("hung up call ended by %q", res.End)
		}
		a.Close()
	}
}
