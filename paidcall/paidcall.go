package paidcall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/sipext"
)

// Plan is what the caller asked for.
type Plan struct {
	// PriceSatPerMin is the price the caller saw (the directory, or a 402's
	// Paysip-Terms): the most it pays (MaxPriceSatPerMin), unless
	// MaxPriceSatPerMin is set.
	PriceSatPerMin    int64
	MaxPriceSatPerMin int64
	Seconds           int64 // the call's length; 0: until ctx ends
	BudgetSat         int64 // most the call may cost; 0: the pool
	CapacitySat       int64 // a new pool's size; 0: sized to the call (meter.SizePool)
	// MaxCapacitySat is the largest pool the caller lets a payee ask for
	// (its terms' smallest pool). 0: CapacitySat when given, else the
	// sized pool or agent.DefaultMinChannelSat, whichever is larger. A
	// payee asking more is refused before anything is funded.
	MaxCapacitySat int64
	Tick           time.Duration
	Prepay         int64 // ticks paid ahead, default 1
	Close          bool  // ask the payee to settle at the end (else the channel stays open for the next call)
}

// End says why a call ended.
type End string

// Ends of a call.
const (
	EndLength End = "the call's length"
	EndBudget End = "the budget"
	EndPool   End = "the pool"
	EndHangup End = "hang-up"
)

// Result is the caller's account of a call.
type Result struct {
	ChannelID     string
	Resumed       bool
	Pool          meter.Pool // a new pool's size and why (zero when resumed)
	CapacitySat   int64
	FundingFeeSat int64
	MinPaymentSat int64 // the payee's smallest first payment
	PaidSat       int64 // this call
	Payments      int
	End           End
	Closed        *channel.Closed // with Plan.Close: the payee's settlement
}

// Caller places paid calls for a payer.
type Caller struct {
	Payer *agent.Payer
	// Reusable lists the open channels with peer a call may resume, best
	// first; nil opens a new channel every call.
	Reusable func(ctx context.Context, peer string) []string
	// OnOpen is told of the channel in use before the meter starts.
	OnOpen func(r *Result)
	// OnTick is told of every payment.
	OnTick func(agent.Tick)
	Log    *slog.Logger
}

func (c *Caller) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log.With("component", "paidcall")
}

// SizePool chooses a new pool for plan: the override, or meter.SizePool
// from the price, the length or budget, the payee's usual minimum payment
// and what the wallet can spend.
func (c *Caller) SizePool(ctx context.Context, plan Plan) (meter.Pool, error) {
	a := c.Payer
	rate, err := a.Chain.FeeRate(ctx, 6)
	if err != nil {
		return meter.Pool{}, err
	}
	spendable, err := a.Wallet.Spendable(ctx, rate)
	if err != nil {
		return meter.Pool{}, err
	}
	if spendable == 0 {
		return meter.Pool{}, fmt.Errorf("%w: the wallet has nothing it can spend", meter.ErrCannotAfford)
	}
	return meter.SizePool(meter.PoolRequest{PriceSatPerMin: plan.PriceSatPerMin, Seconds: plan.Seconds, BudgetSat: plan.BudgetSat,
		MinPaymentSat: agent.DefaultMinPaymentSat, SpendableSat: spendable, OverrideSat: plan.CapacitySat})
}

// Pay runs the caller's side of a paid call on conn: it resumes an open
// channel with peer, or opens one sized to the call, pays second by
// second until the plan's length, budget or pool ends it or ctx ends (the
// caller hangs up), then closes the channel if the plan says so. The
// payee's limits are checked against the plan before anything is funded
// (agent.Payer). The call's SIP leg is the caller's to hang up.
func (c *Caller) Pay(ctx context.Context, conn agent.Conn, peer string, plan Plan) (*Result, error) {
	if plan.PriceSatPerMin <= 0 && plan.MaxPriceSatPerMin <= 0 {
		return nil, errors.New("a paid call needs the price the caller agreed to")
	}
	payer := *c.Payer
	if plan.BudgetSat > 0 && (payer.MaxFirstPaymentSat == 0 || plan.BudgetSat < payer.MaxFirstPaymentSat) {
		// Terms asking a first payment above the budget are refused
		// before anything is funded.
		payer.MaxFirstPaymentSat = plan.BudgetSat
	}
	payer.MaxPriceSatPerMin = plan.MaxPriceSatPerMin
	if payer.MaxPriceSatPerMin == 0 {
		payer.MaxPriceSatPerMin = plan.PriceSatPerMin
	}
	res := &Result{}
	var s *agent.PayerSession
	var err error
	if c.Reusable != nil {
		for _, id := range c.Reusable(ctx, peer) {
			if s, err = payer.Resume(ctx, conn, id); err == nil {
				res.Resumed = true
				break
			}
			if errors.Is(err, agent.ErrNearExpiry) {
				// Checked before a word is sent: open a new channel instead.
				c.log().Info("channel too close to its refund lock to resume; a new one is opened", "channel", id)
				continue
			}
			if !errors.Is(err, agent.ErrResumeRefused) {
				return nil, err
			}
			c.log().Warn("payee refused to resume a channel; left to its refund", "channel", id)
		}
	}
	if s == nil {
		price := plan.PriceSatPerMin
		if price == 0 {
			price = plan.MaxPriceSatPerMin
		}
		sized := plan
		sized.PriceSatPerMin = price
		if res.Pool, err = c.SizePool(ctx, sized); err != nil {
			return nil, err
		}
		payer.CapacitySat = res.Pool.CapacitySat
		payer.MaxCapacitySat = plan.MaxCapacitySat
		if payer.MaxCapacitySat == 0 {
			payer.MaxCapacitySat = max(res.Pool.CapacitySat, agent.DefaultMinChannelSat)
			if plan.CapacitySat > 0 {
				payer.MaxCapacitySat = plan.CapacitySat
			}
		}
		c.log().Info("pool sized", "capacity_sat", res.Pool.CapacitySat, "max_sat", payer.MaxCapacitySat, "reason", res.Pool.Reason)
		if s, err = payer.Open(ctx, conn, peer); err != nil {
			return nil, err
		}
		res.FundingFeeSat = s.FundingFee
	}
	ch := s.Channel()
	res.ChannelID, res.CapacitySat, res.MinPaymentSat = ch.ID(), ch.CapacitySat, s.Terms().MinPaymentSat
	if !res.Resumed && ch.CapacitySat != res.Pool.CapacitySat {
		res.Pool.Reason += fmt.Sprintf("; %d sat asked, raised to %d sat, the payee's smallest pool", res.Pool.CapacitySat, ch.CapacitySat)
		res.Pool.CapacitySat = ch.CapacitySat
	}
	if c.OnOpen != nil {
		c.OnOpen(res)
	}
	base := s.PaidSat()
	m := meter.Payer{PriceSatPerMin: s.Terms().PriceSatPerMin, Tick: plan.Tick, Ahead: plan.Prepay, BudgetSat: plan.BudgetSat, Ticks: plan.Seconds}
	err = s.Meter(ctx, m, func(t agent.Tick) {
		res.Payments++
		if c.OnTick != nil {
			c.OnTick(t)
		}
	})
	res.PaidSat = s.PaidSat() - base
	switch {
	case err == nil:
		res.End = EndLength
	case errors.Is(err, meter.ErrBudget):
		res.End = EndBudget
	case errors.Is(err, meter.ErrPool):
		res.End = EndPool
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		res.End = EndHangup
	default:
		return res, err
	}
	if plan.Close {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if res.Closed, err = s.Close(cctx, "hangup"); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Serve runs the payee's side of a paid call on conn until the caller
// closes or goes away, or falls behind the meter; it returns the SIP
// Reason header the payee's BYE should carry ("" for a plain end).
func Serve(ctx context.Context, payee *agent.Payee, conn agent.Conn, peer string) (res *agent.PayeeResult, hangupReason string, err error) {
	res, err = payee.Serve(ctx, conn, peer)
	if errors.Is(err, agent.ErrPaymentLate) {
		hangupReason = sipext.PaymentLateReason
	}
	return res, hangupReason, err
}

// CleanEnd reports whether a payee session's error is only the caller
// going away (a closed connection).
func CleanEnd(err error) bool {
	return err == nil || errors.Is(err, agent.ErrConnClosed) || strings.Contains(err.Error(), "closed")
}
