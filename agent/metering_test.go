package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/meter"
)

// TestMeteredCall: the payer's meter pays as each (fast) tick starts and
// stops at its budget; every payment stays within elapsed time plus the
// prepaid tick; the payee's watchdog sees nothing late.
func TestMeteredCall(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tick := 50 * time.Millisecond
	w.payee.Metering = &meter.Payee{PriceSatPerMin: price, Tick: tick, Grace: 4 * tick}
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
	if s.PaidSat() != 10_500 || len(ticks) != 11 {
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
