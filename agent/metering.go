package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sat"
)

// ErrPaymentLate ends a payee session whose payer fell behind the meter.
var ErrPaymentLate = errors.New("payment late")

// Tick is what the payer's meter reports each time it pays.
type Tick struct {
	Elapsed   time.Duration
	PaidSat   int64
	PoolLeft  int64
	LowBudget bool // the budget or the pool ends within the warning time
}

// Meter pays for the call as each tick starts (the seed's per-second
// payments), from the moment it is called, until ctx ends or a cap is
// reached: then it returns meter.ErrBudget or meter.ErrPool and the caller
// hangs up. onTick, if set, is told of every payment.
func (s *PayerSession) Meter(ctx context.Context, m meter.Payer, onTick func(Tick)) error {
	// A resumed channel already carries earlier calls: this call's amounts
	// come on top, within what the pool can still pay.
	base := s.PaidSat()
	if room := s.MaxPayable() - base; m.MaxPayableSat == 0 || m.MaxPayableSat > room {
		m.MaxPayableSat = room
	}
	tick := m.Tick
	if tick <= 0 {
		tick = time.Second
	}
	start := time.Now()
	warned := false
	for {
		elapsed := time.Since(start)
		_, target, capErr := m.Target(elapsed)
		if base == 0 && target > 0 && target < s.Terms().MinPaymentSat {
			// A new channel's first payment is at least the payee's
			// minimum (a state it can settle): below 60,000 sat/min the
			// first second costs less than that. Never above the budget:
			// a call whose budget cannot pay that minimum pays nothing.
			if m.BudgetSat > 0 && s.Terms().MinPaymentSat > m.BudgetSat {
				return fmt.Errorf("%w: the payee's minimum first payment %d sat is above the budget %d", meter.ErrBudget, s.Terms().MinPaymentSat, m.BudgetSat)
			}
			target = min(s.Terms().MinPaymentSat, m.MaxPayableSat)
		}
		total, err := sat.Add(base, target)
		if err != nil {
			return err
		}
		if total > s.PaidSat() {
			if err := s.Pay(ctx, total); err != nil {
				return err
			}
			low := m.Low(s.PaidSat() - base)
			if onTick != nil {
				onTick(Tick{Elapsed: elapsed, PaidSat: s.PaidSat(), PoolLeft: s.Channel().CapacitySat - s.PaidSat(), LowBudget: low && !warned})
			}
			warned = warned || low
		}
		if capErr != nil {
			return capErr
		}
		next := start.Add((elapsed/tick + 1) * tick)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(next)):
		}
	}
}

// watchPayments ends the session (cancel with ErrPaymentLate) when the
// payer falls behind m, after telling it why.
func (s *payeeSession) watchPayments(ctx context.Context, m meter.Payee, best *atomic.Int64, cancel context.CancelCauseFunc) {
	start := time.Now()
	step := m.Tick / 4
	if step <= 0 {
		step = 250 * time.Millisecond
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(step):
		}
		elapsed := time.Since(start)
		if due := m.Due(elapsed); best.Load() < due {
			s.log.Warn("payment late: hanging up", "due_sat", due, "held_sat", best.Load(), "elapsed", elapsed)
			e := &paywire.Error{Code: paywire.CodePaymentLate, Reason: "payment late: the call is paid as it goes", Expected: &due}
			e.SetVersion(paywire.Version1)
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			sendMsg(sctx, s.conn, e)
			scancel()
			cancel(ErrPaymentLate)
			return
		}
	}
}
