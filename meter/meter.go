// Package meter turns call time into amounts: what the payer pays as each
// second starts (with a prepaid tick), where it stops (budget, pool), when
// it should warn, and when the payee deems a payment late. It is pure:
// elapsed time is passed in.
package meter

import (
	"errors"
	"time"

	"github.com/paysip/paysip/channel"
)

// Errors.
var (
	ErrBudget = errors.New("budget for the call reached")
	ErrPool   = errors.New("channel pool exhausted")
)

// Payer meters a call for the payer.
type Payer struct {
	PriceSatPerMin int64
	Tick           time.Duration // one paid unit of call, default 1 s
	Ahead          int64         // ticks paid in advance, default 1 (each second as it starts)
	BudgetSat      int64         // most the call may cost; 0: no cap but the pool
	MaxPayableSat  int64         // most the channel can pay (channel.Payer.MaxPayable, or capacity)
	WarnSeconds    int64         // low-balance warning this many seconds before the end, default 30
}

func (m Payer) tick() time.Duration {
	if m.Tick <= 0 {
		return time.Second
	}
	return m.Tick
}

// seconds is the call time that ticks stand for. A tick shorter than a
// second (tests, demos) stands for one second of the price: time runs
// faster, the arithmetic stays per second.
func (m Payer) seconds(ticks int64) int64 {
	if m.tick() < time.Second {
		return ticks
	}
	return ticks * int64(m.tick()/time.Second)
}

func (m Payer) ahead() int64 {
	if m.Ahead <= 0 {
		return 1
	}
	return m.Ahead
}

// Target is what the payer should have paid after elapsed: the ticks
// started so far plus the prepaid ones, at the price. It never exceeds
// what time justifies plus the prepay, nor the budget or the pool; it
// returns ErrBudget or ErrPool (with the capped amount) when a cap binds.
func (m Payer) Target(elapsed time.Duration) (ticks, sat int64, err error) {
	ticks = int64(elapsed/m.tick()) + m.ahead()
	sat, err = channel.Owed(m.PriceSatPerMin, m.seconds(ticks))
	if err != nil {
		return 0, 0, err
	}
	if m.BudgetSat > 0 && sat > m.BudgetSat {
		return ticks, m.BudgetSat, ErrBudget
	}
	if m.MaxPayableSat > 0 && sat > m.MaxPayableSat {
		return ticks, m.MaxPayableSat, ErrPool
	}
	return ticks, sat, nil
}

// Low reports whether the call will hit its budget or pool within
// WarnSeconds at this price.
func (m Payer) Low(paid int64) bool {
	limit := m.MaxPayableSat
	if m.BudgetSat > 0 && (limit == 0 || m.BudgetSat < limit) {
		limit = m.BudgetSat
	}
	if limit == 0 {
		return false
	}
	warn := m.WarnSeconds
	if warn == 0 {
		warn = 30
	}
	need, err := channel.Owed(m.PriceSatPerMin, warn)
	return err == nil && limit-paid <= need
}

// Payee checks the payer keeps up.
type Payee struct {
	PriceSatPerMin int64
	Tick           time.Duration // default 1 s
	Grace          time.Duration // how late a payment may be, default 3 s
}

// Due is the least the payee must hold after elapsed: every tick started
// before elapsed - Grace.
func (m Payee) Due(elapsed time.Duration) int64 {
	tick, grace := m.Tick, m.Grace
	if tick <= 0 {
		tick = time.Second
	}
	if grace <= 0 {
		grace = 3 * time.Second
	}
	if elapsed <= grace {
		return 0
	}
	ticks := int64((elapsed-grace)/tick) + 1
	secs := ticks
	if tick >= time.Second {
		secs = ticks * int64(tick/time.Second)
	}
	owed, err := channel.Owed(m.PriceSatPerMin, secs)
	if err != nil {
		return 0
	}
	return owed
}

// Late reports whether best is below what is due after elapsed.
func (m Payee) Late(elapsed time.Duration, best int64) bool { return best < m.Due(elapsed) }
