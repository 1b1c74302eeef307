// Package meter turns call time into amounts: what the payer pays as each
// second starts (with a prepaid tick), how the payee's minimums round a
// payment up, where it stops (length, budget, pool), when it should warn,
// and when the payee deems a payment late. It is pure: elapsed time is
// passed in.
package meter

import (
	"errors"
	"fmt"
	"time"

	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/sat"
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
	// Ticks is the call's length in ticks (--seconds): the meter pays
	// that many and no more; 0: until the caller hangs up.
	Ticks int64
	// MinPaymentSat and MinStepSat are the payee's terms
	// (channel.Terms): the first payment of a channel is at least
	// MinPaymentSat, a later one at least MinStepSat (default 1) above the
	// last. The payee refuses anything smaller, so a due amount below them
	// is rounded up (see Next).
	MinPaymentSat int64
	MinStepSat    int64
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
	if m.Ticks > 0 && ticks > m.Ticks {
		ticks = m.Ticks
	}
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

// End is the wall time the call lasts when Ticks is set: every paid tick
// is delivered (0 when the call has no set length).
func (m Payer) End() time.Duration {
	if m.Ticks <= 0 {
		return 0
	}
	return time.Duration(m.Ticks) * m.tick()
}

// Next returns the channel total to sign now, or 0 when nothing is due.
// paid is what the channel holds already (earlier calls included), due the
// total that time justifies (paid plus this call's Target), and limit the
// most the channel may hold at the end of this call (the budget and the
// pool). The payee's minimums bind every payment: a channel's first
// payment is at least MinPaymentSat and a later one at least MinStepSat
// above the last, so a due amount below them is rounded up: the payer
// prepays a little more rather than sign what the payee refuses (at 30,000
// sat/min the first second is 500 sat, and a payee asking 1,000 sat first
// gets 1,000 sat: two seconds paid ahead). Rounded up above limit, the
// payment is limit if that meets the minimums; otherwise nothing can be
// paid and Next returns 0 with ok false.
func (m Payer) Next(paid, due, limit int64) (next int64, ok bool) {
	if due > limit {
		due = limit
	}
	if due <= paid {
		return 0, true
	}
	floor := paid + max(m.MinStepSat, 1)
	if paid == 0 {
		floor = max(m.MinPaymentSat, 1)
	}
	next = max(due, floor)
	if next > limit {
		return 0, false
	}
	return next, true
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

// Pool sizing: how much a new channel locks.

// ErrCannotAfford: the wallet cannot fund a pool for the call asked.
var ErrCannotAfford = errors.New("the wallet cannot pay for this call")

// ErrBudgetBelowMinimum: the budget cannot pay even the payee's first
// payment; nothing should be funded.
var ErrBudgetBelowMinimum = errors.New("the budget is below the payee's minimum payment")

// DefaultCallSeconds is the length a pool is sized for when the caller
// gives neither a length nor a budget: ten minutes.
const DefaultCallSeconds = 600

// DustMarginSat is kept in a pool beyond what the call pays, so the
// payer's change in the settlement stays above dust (channel.MaxPayable).
const DustMarginSat = 1_000

// PoolRequest is what a new pool is sized from.
type PoolRequest struct {
	PriceSatPerMin int64 // the price the caller saw (directory or 402 terms)
	Seconds        int64 // the call's length (--seconds); 0: not set
	BudgetSat      int64 // most the call may cost (--budget); 0: not set
	MinPaymentSat  int64 // the payee's smallest first payment (its terms', or the default)
	ReuseCalls     int64 // further calls like this one the pool should carry; default 1
	SpendableSat   int64 // what the wallet can lock (after the funding fee); 0: unknown
	OverrideSat    int64 // --capacity: the caller's own choice
}

// Pool is a chosen pool size and the reason, for the user.
type Pool struct {
	CapacitySat int64
	CallSat     int64 // what the call itself needs
	Reason      string
}

// SizePool chooses a new pool's capacity: what the call needs (its length
// at the price, or its budget, or DefaultCallSeconds; never below the
// payee's minimum payment), plus room for ReuseCalls more such calls and
// DustMarginSat, capped by what the wallet can spend. A call of set length
// or budget that the wallet cannot pay for is refused (ErrCannotAfford)
// before anything is funded.
func SizePool(r PoolRequest) (Pool, error) {
	if r.OverrideSat > 0 {
		if r.SpendableSat > 0 && r.OverrideSat > r.SpendableSat {
			return Pool{}, fmt.Errorf("%w: --capacity %d sat, the wallet can spend %d sat", ErrCannotAfford, r.OverrideSat, r.SpendableSat)
		}
		return Pool{CapacitySat: r.OverrideSat, Reason: "--capacity"}, nil
	}
	if r.PriceSatPerMin <= 0 {
		return Pool{}, fmt.Errorf("price %d sat/min: a pool is sized from a price", r.PriceSatPerMin)
	}
	if r.BudgetSat > 0 && r.BudgetSat < r.MinPaymentSat {
		return Pool{}, fmt.Errorf("%w: budget %d sat, first payment %d sat", ErrBudgetBelowMinimum, r.BudgetSat, r.MinPaymentSat)
	}
	var call int64
	var why string
	var err error
	switch {
	case r.Seconds > 0:
		call, err = channel.Owed(r.PriceSatPerMin, r.Seconds)
		why = fmt.Sprintf("%d s at %d sat/min", r.Seconds, r.PriceSatPerMin)
	case r.BudgetSat > 0:
		call, why = r.BudgetSat, "the budget"
	default:
		call, err = channel.Owed(r.PriceSatPerMin, DefaultCallSeconds)
		why = fmt.Sprintf("no --seconds or --budget: %d min at %d sat/min", DefaultCallSeconds/60, r.PriceSatPerMin)
	}
	if err != nil {
		return Pool{}, err
	}
	if r.BudgetSat > 0 && call > r.BudgetSat {
		call, why = r.BudgetSat, why+", capped by the budget"
	}
	if call < r.MinPaymentSat {
		call, why = r.MinPaymentSat, why+fmt.Sprintf(", raised to the payee's minimum payment %d sat", r.MinPaymentSat)
	}
	reuse := r.ReuseCalls
	if reuse <= 0 {
		reuse = 1
	}
	need, err := sat.Add(call, DustMarginSat)
	if err != nil {
		return Pool{}, err
	}
	margin, err := sat.MulDivCeil(call, reuse, 1)
	if err != nil {
		return Pool{}, err
	}
	capacity, err := sat.Add(need, margin)
	if err != nil {
		return Pool{}, err
	}
	reason := fmt.Sprintf("the call needs %d sat (%s); room for %d more like it", call, why, reuse)
	if r.SpendableSat > 0 && capacity > r.SpendableSat {
		if r.SpendableSat < need && (r.Seconds > 0 || r.BudgetSat > 0 || r.SpendableSat < r.MinPaymentSat+DustMarginSat) {
			return Pool{}, fmt.Errorf("%w: the call needs %d sat (%s) and a %d sat margin; the wallet can spend %d sat", ErrCannotAfford, call, why, DustMarginSat, r.SpendableSat)
		}
		capacity = r.SpendableSat
		reason = fmt.Sprintf("the call needs %d sat (%s); all the wallet can spend", call, why)
	}
	return Pool{CapacitySat: capacity, CallSat: call, Reason: reason}, nil
}
