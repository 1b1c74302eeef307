package faulttest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/meter"
)

// Plan is one call: how long the payer means to talk (in ticks of Tick,
// each standing for a second) and whether it resumes a stored channel.
type Plan struct {
	Seconds int64
	// Resume is a payer channel to go on paying from; "" opens a new one.
	Resume string
}

// PayerOutcome is what the calling side reports of a call.
type PayerOutcome struct {
	ChannelID string
	AckedSat  int64 // acknowledged to it in this session (running total of the channel)
	Closed    bool  // the payee answered close
	Err       error
}

// PayeeOutcome is what the answering side reports of a call.
type PayeeOutcome struct {
	Result *agent.PayeeResult
	Err    error
}

// PayerBehaviour is how the calling side acts in one call. The soak and
// the fault tests drive every call through this interface, so a peer that
// cheats (stops paying, replays an old payment, signs garbage, vanishes
// after the refund is signed...) plugs in beside the honest one: it
// implements Call with whatever it likes on conn, and says it is not
// Honest, so only the other side's guarantees are checked for its calls.
type PayerBehaviour interface {
	Name() string
	// Honest: the money checks of the payer's side (its pools refunded,
	// never paying more than it signed) apply to this behaviour's calls.
	Honest() bool
	// Call runs one call on conn with the World's payer agent (w.Payer:
	// its wallet, store and chain) until the plan ends, ctx ends or conn
	// drops.
	Call(ctx context.Context, w *World, conn agent.Conn, plan Plan) PayerOutcome
}

// PayeeBehaviour is how the answering side acts in one call (see
// PayerBehaviour). A dishonest payee (one that never settles, that
// withholds acks, that claims more than it was paid) implements Serve and
// says it is not Honest: the payer's guarantees are then the ones checked.
type PayeeBehaviour interface {
	Name() string
	Honest() bool
	Serve(ctx context.Context, w *World, conn agent.Conn, peer string) PayeeOutcome
}

// HonestPayer opens (or resumes) a channel, pays each second as it starts
// with the meter (agent.PayerSession.Meter, as `paysip call` does), and
// closes at the end of the plan.
type HonestPayer struct{}

// Name implements PayerBehaviour.
func (HonestPayer) Name() string { return "honest" }

// Honest implements PayerBehaviour.
func (HonestPayer) Honest() bool { return true }

// Call implements PayerBehaviour.
func (HonestPayer) Call(ctx context.Context, w *World, conn agent.Conn, plan Plan) PayerOutcome {
	var (
		s   *agent.PayerSession
		err error
	)
	if plan.Resume != "" {
		s, err = w.Payer.Resume(ctx, conn, plan.Resume)
	} else {
		s, err = w.Payer.Open(ctx, conn, "sip:tutor@paysip.test")
	}
	if err != nil {
		return PayerOutcome{Err: err}
	}
	out := PayerOutcome{ChannelID: s.Channel().ID()}
	budget := s.PaidSat() + plan.Seconds*Price/60
	err = s.Meter(ctx, meter.Payer{PriceSatPerMin: Price, Tick: Tick, BudgetSat: plan.Seconds * Price / 60}, nil)
	out.AckedSat = s.PaidSat()
	if !errors.Is(err, meter.ErrBudget) {
		out.Err = err
		return out
	}
	if out.AckedSat != budget {
		out.Err = errors.New("budget reached below the plan")
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.Close(cctx, "hangup"); err != nil {
		out.Err = err
		return out
	}
	out.Closed = true
	return out
}

// HonestPayee serves the call with the World's payee agent.
type HonestPayee struct{}

// Name implements PayeeBehaviour.
func (HonestPayee) Name() string { return "honest" }

// Honest implements PayeeBehaviour.
func (HonestPayee) Honest() bool { return true }

// Serve implements PayeeBehaviour.
func (HonestPayee) Serve(ctx context.Context, w *World, conn agent.Conn, peer string) PayeeOutcome {
	res, err := w.Payee.Serve(ctx, conn, peer)
	return PayeeOutcome{Result: res, Err: err}
}

// Call is one call in progress between the World's agents over an
// in-memory transport that faults can cut.
type Call struct {
	// PayerConn and PayeeConn are the two ends (cutting either drops both).
	PayerConn, PayeeConn *Conn
	payerCtx, payeeCtx   context.Context
	KillPayer, KillPayee func()
	payerDone, payeeDone chan struct{}
	Payer                PayerOutcome
	Payee                PayeeOutcome
}

// StartCall starts a call: the payee serves, the payer calls, each in its
// goroutine, with its behaviour. Wait for its end with Wait.
func (w *World) StartCall(ctx context.Context, pb PayerBehaviour, eb PayeeBehaviour, plan Plan) *Call {
	a, b := agent.Pipe()
	return w.StartCallOn(ctx, a, b, pb, eb, plan)
}

// StartCallOn is StartCall on a given transport (a WebRTC DataChannel, SIP
// MESSAGE): payerEnd and payeeEnd are its two sides.
func (w *World) StartCallOn(ctx context.Context, payerEnd, payeeEnd agent.Conn, pb PayerBehaviour, eb PayeeBehaviour, plan Plan) *Call {
	c := &Call{PayerConn: NewConn(payerEnd), PayeeConn: NewConn(payeeEnd), payerDone: make(chan struct{}), payeeDone: make(chan struct{})}
	pctx, pcancel := context.WithCancel(ctx)
	ectx, ecancel := context.WithCancel(ctx)
	payerDB, payeeDB := w.PayerDB, w.PayeeDB
	var once1, once2 sync.Once
	c.KillPayer = func() { once1.Do(func() { payerDB.Kill(); c.PayerConn.Cut(); pcancel() }) }
	c.KillPayee = func() { once2.Do(func() { payeeDB.Kill(); c.PayeeConn.Cut(); ecancel() }) }
	go func() {
		defer close(c.payeeDone)
		defer ecancel()
		c.Payee = eb.Serve(ectx, w, c.PayeeConn, "sip:caller@paysip.test")
	}()
	go func() {
		defer close(c.payerDone)
		defer pcancel()
		c.Payer = pb.Call(pctx, w, c.PayerConn, plan)
		c.PayerConn.Close()
	}()
	return c
}

// Wait waits for both sides to finish (at most d) and reports whether
// they did.
func (c *Call) Wait(d time.Duration) bool {
	t := time.After(d)
	for _, ch := range []chan struct{}{c.payerDone, c.payeeDone} {
		select {
		case <-ch:
		case <-t:
			return false
		}
	}
	return true
}
