package faulttest

import (
	"context"
	"fmt"
	"sync"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paywire"
)

// Dishonest peers for the soak: each cheats in one of the ways of
// agent/attack_test.go, on the World's own agents, through a Conn that
// rewrites, drops or forges protocol messages.

// Tamper is a Conn whose outgoing (Out) and incoming (In) protocol
// messages pass through functions that may change them, hold them back or
// drop them (nil): the honest agent behind it becomes a dishonest peer.
// Inject sends a forged message.
type Tamper struct {
	agent.Conn
	Out, In func(paywire.Message) paywire.Message
}

// Send implements agent.Conn.
func (c *Tamper) Send(ctx context.Context, b []byte) error {
	if c.Out != nil {
		if m, err := paywire.Decode(b); err == nil {
			if m = c.Out(m); m == nil {
				return nil
			}
			if b, err = paywire.Encode(m); err != nil {
				return err
			}
		}
	}
	return c.Conn.Send(ctx, b)
}

// Recv implements agent.Conn.
func (c *Tamper) Recv(ctx context.Context) ([]byte, error) {
	for {
		b, err := c.Conn.Recv(ctx)
		if err != nil || c.In == nil {
			return b, err
		}
		m, derr := paywire.Decode(b)
		if derr != nil {
			return b, nil
		}
		if m = c.In(m); m != nil {
			return paywire.Encode(m)
		}
	}
}

// Inject sends m, in version 1, past Out.
func (c *Tamper) Inject(ctx context.Context, m paywire.Message) {
	m.SetVersion(paywire.Version1)
	if b, err := paywire.Encode(m); err == nil {
		c.Conn.Send(ctx, b)
	}
}

// ReplayingPayer pays part of the call, then sends an old payment again
// (hoping the payee takes a lower state).
type ReplayingPayer struct{}

// Name implements PayerBehaviour.
func (ReplayingPayer) Name() string { return "replaying" }

// Honest implements PayerBehaviour.
func (ReplayingPayer) Honest() bool { return false }

// Call implements PayerBehaviour.
func (ReplayingPayer) Call(ctx context.Context, w *World, conn agent.Conn, plan Plan) PayerOutcome {
	var mu sync.Mutex
	var first *paywire.Pay
	tc := &Tamper{Conn: conn, Out: func(m paywire.Message) paywire.Message {
		if p, ok := m.(*paywire.Pay); ok {
			mu.Lock()
			if first == nil {
				cp := *p
				first = &cp
			}
			mu.Unlock()
		}
		return m
	}}
	s, err := w.Payer.Open(ctx, tc, "sip:tutor@paysip.test")
	if err != nil {
		return PayerOutcome{Err: err}
	}
	out := PayerOutcome{ChannelID: s.Channel().ID()}
	half := max(plan.Seconds/2, 2)
	err = s.Meter(ctx, meter.Payer{PriceSatPerMin: Price, Tick: Tick, BudgetSat: half * Price / 60}, nil)
	out.AckedSat = s.PaidSat()
	mu.Lock()
	old := first
	mu.Unlock()
	if old != nil {
		tc.Inject(ctx, old)
		conn.Recv(ctx) // the payee's refusal, then it hangs up and settles
	}
	out.Err = fmt.Errorf("replayed a payment of %d after %d (%v)", firstPaid(old), out.AckedSat, err)
	return out
}

func firstPaid(p *paywire.Pay) int64 {
	if p == nil {
		return 0
	}
	return p.PaidSat
}

// AbandoningPayer pays part of the call, then stops paying without a
// word (it hopes to be served for free until the payee notices).
type AbandoningPayer struct{}

// Name implements PayerBehaviour.
func (AbandoningPayer) Name() string { return "abandoning" }

// Honest implements PayerBehaviour.
func (AbandoningPayer) Honest() bool { return false }

// Call implements PayerBehaviour.
func (AbandoningPayer) Call(ctx context.Context, w *World, conn agent.Conn, plan Plan) PayerOutcome {
	s, err := w.Payer.Open(ctx, conn, "sip:tutor@paysip.test")
	if err != nil {
		return PayerOutcome{Err: err}
	}
	out := PayerOutcome{ChannelID: s.Channel().ID()}
	s.Meter(ctx, meter.Payer{PriceSatPerMin: Price, Tick: Tick, BudgetSat: max(plan.Seconds/2, 2) * Price / 60}, nil)
	out.AckedSat = s.PaidSat()
	// Silent: the payee's watchdog hangs up on it and settles.
	for {
		if _, err := conn.Recv(ctx); err != nil {
			out.Err = err
			return out
		}
	}
}

// MutePayee keeps payments but stops acknowledging them after the second.
type MutePayee struct{}

// Name implements PayeeBehaviour.
func (MutePayee) Name() string { return "mute" }

// Honest implements PayeeBehaviour.
func (MutePayee) Honest() bool { return false }

// Serve implements PayeeBehaviour.
func (MutePayee) Serve(ctx context.Context, w *World, conn agent.Conn, peer string) PayeeOutcome {
	acks := 0
	tc := &Tamper{Conn: conn, Out: func(m paywire.Message) paywire.Message {
		if _, ok := m.(*paywire.Ack); ok {
			if acks++; acks > 2 {
				return nil
			}
		}
		return m
	}}
	res, err := w.Payee.Serve(ctx, tc, peer)
	return PayeeOutcome{Result: res, Err: err}
}

// FakeClosePayee answers the payer's close with a settlement it never made
// (it hopes the payer then forgets its refund).
type FakeClosePayee struct{}

// Name implements PayeeBehaviour.
func (FakeClosePayee) Name() string { return "fake-close" }

// Honest implements PayeeBehaviour.
func (FakeClosePayee) Honest() bool { return false }

// Serve implements PayeeBehaviour.
func (FakeClosePayee) Serve(ctx context.Context, w *World, conn agent.Conn, peer string) PayeeOutcome {
	var tc *Tamper
	tc = &Tamper{Conn: conn, In: func(m paywire.Message) paywire.Message {
		if c, ok := m.(*paywire.Close); ok {
			tc.Inject(ctx, &paywire.Closed{ChannelID: c.ChannelID, PaidSat: 1, SettlementTxID: fmt.Sprintf("%064x", 0xdead)})
			return nil
		}
		return m
	}}
	res, err := w.Payee.Serve(ctx, tc, peer)
	return PayeeOutcome{Result: res, Err: err}
}
