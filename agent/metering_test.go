package agent_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/wallet"
)

// TestMeteredCall: the payer's meter pays as each (fast) tick starts and
// stops at its budget; every payment stays within elapsed time plus the
// prepaid tick; the payee's watchdog sees nothing late.
func TestMeteredCall(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tick := 50 * time.Millisecond
	// A generous grace: this test is about amounts, and a loaded machine
	// may stall an fsync longer than a fast tick.
	w.payee.Metering = &meter.Payee{PriceSatPerMin: price, Tick: tick, Grace: 20 * tick}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _, done := w.call(ctx)
	var ticks []agent.Tick
	start := time.Now()
	err := s.Meter(ctx, meter.Payer{PriceSatPerMin: price, Tick: tick, BudgetSat: 10_500}, func(tk agent.Tick) {
		// 1,000 sat a tick: never more than the ticks started plus one.
		if justified := (int64(time.Since(start)/tick) + 2) * 1000; tk.PaidSat > justified {
			t.Errorf("paid %d after %v: ahead of time", tk.PaidSat, time.Since(start))
		}
		ticks = append(ticks, tk)
	})
	if !errors.Is(err, meter.ErrBudget) {
		t.Fatalf("meter ended with %v", err)
	}
	// 11 ticks, or fewer when a loaded machine made the payer fall behind
	// (it then pays what is due in one payment).
	if s.PaidSat() != 10_500 || len(ticks) == 0 || len(ticks) > 11 {
		t.Fatalf("paid %d in %d ticks", s.PaidSat(), len(ticks))
	}
	if _, err := s.Close(ctx, "budget"); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.res.PaidSat != 10_500 {
		t.Fatalf("payee %+v %v", r.res, r.err)
	}
}

// TestLatePaymentsHangUp: a payer that stops paying (or pays less than
// the meter) is cut off by the payee after the grace period; the payee
// settles what it holds.
func TestLatePaymentsHangUp(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tick := 50 * time.Millisecond
	w.payee.Metering = &meter.Payee{PriceSatPerMin: price, Tick: tick, Grace: 3 * tick}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _, done := w.call(ctx)
	// Pays the first two ticks, then underpays: one sat at a time.
	w.pay(ctx, s, 1, 2)
	for i := int64(1); i <= 20; i++ {
		if err := s.Pay(ctx, 2000+i); err != nil {
			break // cut off: the payee said payment_late and hung up
		}
		time.Sleep(tick)
	}
	r := <-done
	if !errors.Is(r.err, agent.ErrPaymentLate) {
		t.Fatalf("payee ended with %v", r.err)
	}
	if r.res.SettlementTxID == "" || r.res.PaidSat < 2000 {
		t.Fatalf("payee result %+v", r.res)
	}
}

// TestPaidCallsAtEveryPrice: a 3-second metered call (fast ticks) at
// prices from 1 to 10,000,000 sat/min, each with its own payer and payee
// on one real regtest node, in a pool sized to the call. Whatever the
// price, the first payment is the larger of the payee's minimum and the
// first second, the call is paid to its end, and the chain agrees to the
// satoshi: the payer lost what the meter paid plus the funding fee, the
// payee gained it less the settlement fee.
func TestPaidCallsAtEveryPrice(t *testing.T) {
	env := regtest.New(t)
	prices := []int64{1, 100, 1000, 20_000, 30_000, 59_999, 60_000, 60_001, 600_000, 10_000_000}
	const seconds, funds = 3, 2_000_000
	type party struct {
		payer, payee *wallet.Wallet
	}
	parties := make([]party, len(prices))
	for i := range prices {
		parties[i].payer, _ = env.NewWallet(fmt.Sprintf("payer%d", i), "")
		parties[i].payee, _ = env.NewWallet(fmt.Sprintf("payee%d", i), "")
		a, _ := parties[i].payer.NewAddress()
		if _, err := env.Faucet.Send(context.Background(), a, funds, regtest.FeeRate); err != nil {
			t.Fatal(err)
		}
	}
	env.Mine(1)
	// Blocks come on their own, as on a network: a pool above the payee's
	// zero-conf limit waits for one.
	defer env.Node.MineEvery(500 * time.Millisecond)()
	tick := 100 * time.Millisecond
	t.Run("prices", func(t *testing.T) {
		for i, price := range prices {
			p := parties[i]
			t.Run(fmt.Sprint(price), func(t *testing.T) {
				t.Parallel()
				w := &world{t: t, env: env, payerW: p.payer, payeeW: p.payee}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				spendable, err := p.payer.Spendable(ctx, regtest.FeeRate)
				if err != nil {
					t.Fatal(err)
				}
				pool, err := meter.SizePool(meter.PoolRequest{PriceSatPerMin: price, Seconds: seconds, MinPaymentSat: agent.DefaultMinPaymentSat, SpendableSat: spendable})
				if err != nil {
					t.Fatal(err)
				}
				w.payer = &agent.Payer{Wallet: p.payer, Chain: env.Chain, Store: openStore(t, "payer.db"), CapacitySat: pool.CapacitySat,
					MaxCapacitySat: max(pool.CapacitySat, agent.DefaultMinChannelSat), MaxPriceSatPerMin: price}
				// Regtest's fee is fixed: no headroom, the minimum first
				// payment is the configured 1,000 sat.
				w.payee = &agent.Payee{Wallet: p.payee, Chain: env.Chain, Store: openStore(t, "payee.db"), PriceSatPerMin: price, Poll: pollingStep, FeeHeadroom: 1,
					Metering: &meter.Payee{PriceSatPerMin: price, Tick: tick, Grace: 10 * tick}}
				payerBefore, payeeBefore := env.Confirmed(p.payer), env.Confirmed(p.payee)
				s, _, done := w.call(ctx)
				var ticks []agent.Tick
				start := time.Now()
				if err := s.Meter(ctx, meter.Payer{Tick: tick, Ticks: seconds}, func(tk agent.Tick) { ticks = append(ticks, tk) }); err != nil {
					t.Fatalf("meter: %v", err)
				}
				if lasted := time.Since(start); lasted < seconds*tick {
					t.Errorf("a %d-tick call lasted %v", seconds, lasted)
				}
				owed, _ := channel.Owed(price, seconds)
				want := max(owed, agent.DefaultMinPaymentSat)
				if len(ticks) == 0 || ticks[0].PaidSat < agent.DefaultMinPaymentSat || ticks[len(ticks)-1].PaidSat != want || s.PaidSat() != want {
					t.Fatalf("payments %+v; want %d in all, the first at least %d", ticks, want, agent.DefaultMinPaymentSat)
				}
				first, _ := channel.Owed(price, 1)
				if ticks[0].PaidSat != max(first, agent.DefaultMinPaymentSat) {
					t.Errorf("first payment %d, want max(%d, %d)", ticks[0].PaidSat, first, agent.DefaultMinPaymentSat)
				}
				closed, err := s.Close(ctx, "hangup")
				if err != nil {
					t.Fatal(err)
				}
				if r := <-done; r.err != nil || r.res.PaidSat != want {
					t.Fatalf("payee %+v %v", r.res, r.err)
				}
				fundingFee := w.fee(s.Channel().Outpoint.Hash.String())
				settlementFee := w.fee(closed.SettlementTxID)
				w.waitConfirmed(ctx, closed.SettlementTxID)
				w.waitConfirmed(ctx, s.Channel().Outpoint.Hash.String())
				if lost := payerBefore - env.Confirmed(p.payer); lost != want+fundingFee {
					t.Errorf("payer lost %d, want paid %d + funding fee %d", lost, want, fundingFee)
				}
				if gained := env.Confirmed(p.payee) - payeeBefore; gained != want-settlementFee {
					t.Errorf("payee gained %d, want paid %d - settlement fee %d", gained, want, settlementFee)
				}
				t.Logf("%d sat/min: pool %d (%s), %d payments, paid %d, fees %d + %d", price, pool.CapacitySat, pool.Reason, len(ticks), want, fundingFee, settlementFee)
			})
		}
	})
}

// waitConfirmed waits for a transaction's first confirmation (blocks come
// on their own).
func (w *world) waitConfirmed(ctx context.Context, txid string) {
	w.t.Helper()
	h, _ := chainhashFrom(txid)
	for {
		st, err := w.env.Chain.TxStatus(ctx, h)
		if err != nil {
			w.t.Fatal(err)
		}
		if st.Confirmations > 0 {
			return
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("%s not confirmed", txid)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// slowConn delays every message the payer sends, as a loaded machine or a
// slow link would.
type slowConn struct {
	agent.Conn
	delay time.Duration
}

func (c slowConn) Send(ctx context.Context, msg []byte) error {
	time.Sleep(c.delay)
	return c.Conn.Send(ctx, msg)
}

// TestSlowPayerPaysTheWholeCall: a payer whose payments take longer than
// a tick falls behind, catches up, and still pays every second of a call
// of set length before the meter ends it.
func TestSlowPayerPaysTheWholeCall(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	done := make(chan served, 1)
	go func() {
		res, err := w.payee.Serve(ctx, b, "sip:caller@example.org")
		done <- served{res, err}
	}()
	s, err := w.payer.Open(ctx, slowConn{Conn: a, delay: 300 * time.Millisecond}, "sip:tutor@example.org")
	if err != nil {
		t.Fatal(err)
	}
	tick := 50 * time.Millisecond
	var payments int
	if err := s.Meter(ctx, meter.Payer{Tick: tick, Ticks: 8}, func(agent.Tick) { payments++ }); err != nil {
		t.Fatal(err)
	}
	if s.PaidSat() != 8000 || payments >= 8 {
		t.Fatalf("paid %d in %d payments; want 8,000 in fewer than 8 (it fell behind)", s.PaidSat(), payments)
	}
	s.Close(ctx, "hangup")
	<-done
}
