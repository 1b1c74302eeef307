package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/paysip/paysip/channel"
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

// Meter pays for the call as each tick starts (the original write-up's
// per-second payments), from the moment it is called, until ctx ends, the
// call's length (m.Ticks) is over, or a cap is reached: then it returns
// meter.ErrBudget or meter.ErrPool and the caller hangs up. A call of set
// length returns nil once every paid tick has been delivered: it lasts
// what was paid for. The payee's minimums (its terms' MinPaymentSat and
// MinStepSat, unless m sets them) round payments up, so the first payment
// is the larger of the terms' minimum and the first tick. onTick, if set,
// is told of every payment.
func (s *PayerSession) Meter(ctx context.Context, m meter.Payer, onTick func(Tick)) error {
	if t := s.Terms(); t != nil {
		if m.PriceSatPerMin == 0 {
			m.PriceSatPerMin = t.PriceSatPerMin
		}
		if m.MinPaymentSat == 0 {
			m.MinPaymentSat = t.MinPaymentSat
		}
		if m.MinStepSat == 0 {
			m.MinStepSat = t.MinStepSat
		}
	}
	// A resumed channel already carries earlier calls: this call's amounts
	// come on top, within what the pool can still pay.
	base := s.PaidSat()
	capErr := meter.ErrPool
	room := s.MaxPayable() - base
	if m.MaxPayableSat > 0 && m.MaxPayableSat < room {
		room = m.MaxPayableSat
	}
	if m.BudgetSat > 0 && m.BudgetSat <= room {
		room, capErr = m.BudgetSat, meter.ErrBudget
	}
	limit, err := sat.Add(base, room)
	if err != nil {
		return err
	}
	m.BudgetSat, m.MaxPayableSat = 0, 0 // the limit binds
	tick := m.Tick
	if tick <= 0 {
		tick = time.Second
	}
	start := time.Now()
	warned := false
	for {
		elapsed := time.Since(start)
		// Every tick delivered is paid, even by a payer that fell behind:
		// the last payment (capped at the call's length) comes before the
		// end.
		over := m.End() > 0 && elapsed >= m.End()
		_, target, err := m.Target(elapsed)
		if err != nil {
			return err
		}
		due, err := sat.Add(base, target)
		if err != nil {
			return err
		}
		next, ok := m.Next(s.PaidSat(), due, limit)
		if next > 0 {
			if err := s.Pay(ctx, next); err != nil {
				return err
			}
			low := limit-s.PaidSat() <= lowMargin(m)
			if onTick != nil {
				onTick(Tick{Elapsed: elapsed, PaidSat: s.PaidSat(), PoolLeft: s.Channel().CapacitySat - s.PaidSat(), LowBudget: low && !warned})
			}
			warned = warned || low
		}
		if !ok || due >= limit && s.PaidSat() >= limit {
			return capErr
		}
		if over {
			return nil
		}
		wake := start.Add((elapsed/tick + 1) * tick)
		if end := m.End(); end > 0 && start.Add(end).Before(wake) {
			wake = start.Add(end)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(wake)):
		}
	}
}

// lowMargin is what WarnSeconds of call cost at m's price.
func lowMargin(m meter.Payer) int64 {
	warn := m.WarnSeconds
	if warn == 0 {
		warn = 30
	}
	need, err := channel.Owed(m.PriceSatPerMin, warn)
	if err != nil {
		return 0
	}
	return need
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
