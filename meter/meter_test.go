package meter

import (
	"errors"
	"testing"
	"time"

	"github.com/paysip/paysip/channel"
)

func TestPayerTarget(t *testing.T) {
	m := Payer{PriceSatPerMin: 60_000}
	for _, c := range []struct {
		elapsed time.Duration
		ticks   int64
		sat     int64
	}{{0, 1, 1000}, {999 * time.Millisecond, 1, 1000}, {time.Second, 2, 2000}, {59500 * time.Millisecond, 60, 60_000}} {
		ticks, sat, err := m.Target(c.elapsed)
		if err != nil || ticks != c.ticks || sat != c.sat {
			t.Errorf("Target(%v) = %d, %d, %v; want %d, %d", c.elapsed, ticks, sat, err, c.ticks, c.sat)
		}
		// Never more than elapsed time justifies plus the prepaid tick.
		if justified, _ := channel.Owed(60_000, int64(c.elapsed/time.Second)+1); sat > justified {
			t.Errorf("paid %d, elapsed time and one tick justify %d", sat, justified)
		}
	}
	m.BudgetSat = 5500
	if _, sat, err := m.Target(10 * time.Second); !errors.Is(err, ErrBudget) || sat != 5500 {
		t.Fatalf("budget: %d %v", sat, err)
	}
	m.BudgetSat, m.MaxPayableSat = 0, 3000
	if _, sat, err := m.Target(10 * time.Second); !errors.Is(err, ErrPool) || sat != 3000 {
		t.Fatalf("pool: %d %v", sat, err)
	}
	m.MaxPayableSat, m.Ahead = 0, 2
	if ticks, sat, _ := m.Target(0); ticks != 2 || sat != 2000 {
		t.Fatalf("two ahead: %d %d", ticks, sat)
	}
}

func TestLow(t *testing.T) {
	m := Payer{PriceSatPerMin: 60_000, MaxPayableSat: 100_000}
	if m.Low(60_000) || !m.Low(70_000) {
		t.Fatal("low balance 30 s before the pool ends")
	}
	if (Payer{PriceSatPerMin: 60_000}).Low(1 << 40) {
		t.Fatal("no limit, no warning")
	}
}

func TestPayeeDue(t *testing.T) {
	m := Payee{PriceSatPerMin: 60_000, Grace: 2 * time.Second}
	for _, c := range []struct {
		elapsed time.Duration
		due     int64
	}{{0, 0}, {2 * time.Second, 0}, {2001 * time.Millisecond, 1000}, {5 * time.Second, 4000}} {
		if got := m.Due(c.elapsed); got != c.due {
			t.Errorf("Due(%v) = %d, want %d", c.elapsed, got, c.due)
		}
	}
	if !m.Late(5*time.Second, 3999) || m.Late(5*time.Second, 4000) {
		t.Fatal("lateness")
	}
	// Fast ticks: one tick stands for a second of price.
	f := Payee{PriceSatPerMin: 60_000, Tick: 100 * time.Millisecond, Grace: 200 * time.Millisecond}
	if got := f.Due(450 * time.Millisecond); got != 3000 {
		t.Fatalf("fast Due %d", got)
	}
}

// TestNextMinimums: the first payment is the larger of the payee's
// minimum and the first unit, later ones at least a step; a rounded-up
// payment never passes the limit.
func TestNextMinimums(t *testing.T) {
	m := Payer{MinPaymentSat: 1000, MinStepSat: 1}
	for _, c := range []struct {
		name             string
		paid, due, limit int64
		next             int64
		ok               bool
	}{
		{"first below minimum (30,000 sat/min, 1 s)", 0, 500, 1_000_000, 1000, true},
		{"first above minimum", 0, 2500, 1_000_000, 2500, true},
		{"nothing due: the minimum covers it", 1000, 1000, 1_000_000, 0, true},
		{"later payment", 1000, 1500, 1_000_000, 1500, true},
		{"1 sat/min: first payment covers 1,000 minutes", 0, 1, 1_000_000, 1000, true},
		{"due capped at the limit", 1000, 5000, 3000, 3000, true},
		{"minimum above the limit", 0, 500, 800, 0, false},
		{"limit reached", 3000, 5000, 3000, 0, true},
	} {
		next, ok := m.Next(c.paid, c.due, c.limit)
		if next != c.next || ok != c.ok {
			t.Errorf("%s: Next(%d, %d, %d) = %d, %v; want %d, %v", c.name, c.paid, c.due, c.limit, next, ok, c.next, c.ok)
		}
	}
	m.MinStepSat = 100
	if next, ok := m.Next(1000, 1010, 1_000_000); next != 1100 || !ok {
		t.Errorf("step of 100: %d %v", next, ok)
	}
}

// TestCallLength: a call of N ticks pays N and no more, and lasts N ticks.
func TestCallLength(t *testing.T) {
	m := Payer{PriceSatPerMin: 60_000, Ticks: 3}
	if ticks, sat, _ := m.Target(10 * time.Second); ticks != 3 || sat != 3000 {
		t.Fatalf("target after the end: %d ticks, %d sat", ticks, sat)
	}
	if m.End() != 3*time.Second {
		t.Fatalf("end %v", m.End())
	}
}

func TestSizePool(t *testing.T) {
	for _, c := range []struct {
		name string
		r    PoolRequest
		want int64
		err  error
	}{
		{"8 s at 60,000 from 500,000", PoolRequest{PriceSatPerMin: 60_000, Seconds: 8, MinPaymentSat: 1000, SpendableSat: 500_000}, 8000*2 + DustMarginSat, nil},
		{"budget", PoolRequest{PriceSatPerMin: 60_000, BudgetSat: 20_000, SpendableSat: 500_000}, 40_000 + DustMarginSat, nil},
		{"no length: ten minutes, capped by the wallet", PoolRequest{PriceSatPerMin: 60_000, SpendableSat: 500_000}, 500_000, nil},
		{"1 sat/min: the minimum payment", PoolRequest{PriceSatPerMin: 1, Seconds: 3, MinPaymentSat: 1000}, 2000 + DustMarginSat, nil},
		{"cannot afford", PoolRequest{PriceSatPerMin: 10_000_000, Seconds: 60, SpendableSat: 500_000}, 0, ErrCannotAfford},
		{"override", PoolRequest{PriceSatPerMin: 60_000, OverrideSat: 300_000, SpendableSat: 500_000}, 300_000, nil},
		{"override above the wallet", PoolRequest{OverrideSat: 600_000, SpendableSat: 500_000}, 0, ErrCannotAfford},
		{"budget below the first payment", PoolRequest{PriceSatPerMin: 1000, BudgetSat: 500, MinPaymentSat: 1000, SpendableSat: 500_000}, 0, ErrBudgetBelowMinimum},
	} {
		p, err := SizePool(c.r)
		if !errors.Is(err, c.err) || p.CapacitySat != c.want {
			t.Errorf("%s: %d (%s) %v; want %d %v", c.name, p.CapacitySat, p.Reason, err, c.want, c.err)
		}
	}
}
