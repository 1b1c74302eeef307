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
