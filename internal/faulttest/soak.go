package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/store"
)

// Fault is one kind of fault the soak injects into a call.
type Fault int

// Faults.
const (
	FaultNone        Fault = iota
	FaultDisconnect        // the transport drops mid-call (either side's end)
	FaultPayerDies         // the payer's process dies mid-call and starts again
	FaultPayeeDies         // the payee's process dies mid-call and starts again
	FaultNodeRestart       // the Bitcoin node stops and starts mid-call
	// FaultPayeeDiesAtFunding: the payee dies as the payer stores its
	// refund, just before the funding goes out: a pool with nothing paid.
	FaultPayeeDiesAtFunding
	numFaults
)

func (f Fault) String() string {
	return [...]string{"none", "disconnect", "payer-dies", "payee-dies", "node-restart", "payee-dies-at-funding"}[f]
}

// SoakConfig is a soak run. Payers and Payees are the behaviours drawn
// from for each call (honest ones when empty): put a dishonest behaviour
// beside the honest one to have it meet random faults too. The checks at
// the end protect the honest: the payer's (pools spent, never more paid
// than signed) apply when every payer behaviour is Honest, the payee's
// (every stored payment settled, so every acknowledged satoshi) when every
// payee behaviour is, and "the payee got what it acknowledged" on the
// payer's records only when both are.
type SoakConfig struct {
	Seed        uint64
	Calls       int
	MaxRestarts int // node restarts at most (each costs ~1.5 s), default 4
	Payers      []PayerBehaviour
	Payees      []PayeeBehaviour
	AckTimeout  time.Duration // the payer's (agent default when 0)
}

// SoakReport is a soak's figures.
type SoakReport struct {
	Calls, Closed     int
	Faults            map[string]int
	AckedSat          int64 // acknowledged to the payer over all calls
	Payer, Payee      Money // the end accounting, from the chain
	NeverFunded       int   // payer pools whose funding never reached the chain
	Duration, EndTime time.Duration
}

// Soak runs cfg.Calls calls one after the other between the World's
// agents, each with a random fault drawn from cfg.Seed (logged: the same
// seed replays the same draws), the agents' watchers running as in
// production. At the end it mines past every lock time in steps, letting
// the watchers settle and refund, and checks every channel against the
// chain: every acknowledged satoshi settled for the payee, every unspent
// pool refunded to the payer.
func Soak(t *testing.T, cfg SoakConfig) SoakReport {
	t.Helper()
	start := time.Now()
	if cfg.MaxRestarts == 0 {
		cfg.MaxRestarts = 4
	}
	if len(cfg.Payers) == 0 {
		cfg.Payers = []PayerBehaviour{HonestPayer{}}
	}
	if len(cfg.Payees) == 0 {
		cfg.Payees = []PayeeBehaviour{HonestPayee{}}
	}
	t.Logf("soak seed %d (replay with PAYSIP_SOAK_SEED=%d)", cfg.Seed, cfg.Seed)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9a751b))
	var stored atomic.Int64 // payments the current call's payee stored
	const expiry = 400
	w := New(t, Options{
		PayerSat: int64(cfg.Calls+20) * 110_000, PayerCoins: 12, CapacitySat: 100_000, ExpiryBlocks: expiry, AckTimeout: cfg.AckTimeout,
		Payee: func(p *agent.Payee) {
			p.Metering = &meter.Payee{PriceSatPerMin: Price, Tick: Tick, Grace: 12 * Tick}
			p.OnPayment = func(string, int64) { stored.Add(1) }
		},
	})
	if w.Node.Tip()+expiry < w.Node.Tip()+uint32(cfg.Calls+cfg.MaxRestarts+10) {
		t.Fatal("lock window shorter than the soak's blocks")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep := SoakReport{Calls: cfg.Calls, Faults: map[string]int{}}
	stopWatch := w.Watch(ctx, 50*time.Millisecond)
	defer func() { stopWatch() }()
	restartWatchers := func() {
		stopWatch()
		stopWatch = w.Watch(ctx, 50*time.Millisecond)
	}
	for i := 0; i < cfg.Calls; i++ {
		pb, eb := cfg.Payers[rng.IntN(len(cfg.Payers))], cfg.Payees[rng.IntN(len(cfg.Payees))]
		f := Fault(rng.IntN(int(numFaults)))
		if f == FaultNodeRestart && rep.Faults[f.String()] >= cfg.MaxRestarts {
			f = FaultNone
		}
		plan := Plan{Seconds: 4 + rng.Int64N(30)}
		at := rng.Int64N(plan.Seconds) // after this many stored payments (0: while opening)
		side := rng.IntN(2)
		stored.Store(0)
		var call *Call
		if f == FaultPayeeDiesAtFunding {
			w.PayerDB.AfterInsert(func() { call.KillPayee() })
		}
		call = w.StartCall(ctx, pb, eb, plan)
		fired := make(chan struct{})
		go func() {
			defer close(fired)
			if f == FaultNone || f == FaultPayeeDiesAtFunding {
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for stored.Load() < at && time.Now().Before(deadline) {
				select {
				case <-call.payerDone:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			switch f {
			case FaultDisconnect:
				if side == 0 {
					call.PayerConn.Cut()
				} else {
					call.PayeeConn.Cut()
				}
			case FaultPayerDies:
				call.KillPayer()
			case FaultPayeeDies:
				call.KillPayee()
			case FaultNodeRestart:
				w.Node.Restart(50 * time.Millisecond)
			}
		}()
		if !call.Wait(60 * time.Second) {
			t.Fatalf("call %d (%s, fault %s): a side did not end within a minute", i, plan, f)
		}
		<-fired
		rep.Faults[f.String()]++
		if call.Payer.Closed {
			rep.Closed++
		}
		switch f {
		case FaultPayerDies:
			w.RestartPayer()
			restartWatchers()
		case FaultPayeeDies, FaultPayeeDiesAtFunding:
			w.PayerDB.AfterInsert(nil)
			w.RestartPayee()
			restartWatchers()
		case FaultNodeRestart:
			// Known bug (see TestNodeRestartsMidCall): Payer.WatchRefunds
			// returns on a chain error; a supervisor starts it again.
			restartWatchers()
		}
		w.Node.Mine(1) // the funding (and its change) confirm
	}
	rep.Duration = time.Since(start)
	endStart := time.Now()
	rep.NeverFunded = w.finish(t, ctx)
	stopWatch()
	stopWatch = func() {}
	w.Payer.Recover(ctx)
	for _, rec := range w.PayerDB.Records(t) {
		rep.AckedSat += rec.AckedSat
	}
	if honest(cfg.Payers) {
		rep.Payer = w.CheckPayerAgainst(t, honest(cfg.Payees))
	}
	if honest(cfg.Payees) {
		rep.Payee = w.CheckPayee(t)
	}
	rep.EndTime = time.Since(endStart)
	faults := make([]string, 0, len(rep.Faults))
	for k, v := range rep.Faults {
		faults = append(faults, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(faults)
	t.Logf("soak: %d calls (%d closed normally) in %v, faults %v; end phase %v", rep.Calls, rep.Closed, rep.Duration.Round(time.Millisecond), faults, rep.EndTime.Round(time.Millisecond))
	t.Logf("soak money on chain: %d sat acknowledged; payer's %d pools: %d settled for %d sat, %d refunded for %d sat, %d never funded; payee's %d channels: %d sat settled",
		rep.AckedSat, rep.Payer.Channels, rep.Payer.Settlements, rep.Payer.SettledSat, rep.Payer.Refunds, rep.Payer.RefundedSat, rep.NeverFunded, rep.Payee.Channels, rep.Payee.SettledSat)
	return rep
}

func honest[B interface{ Honest() bool }](bs []B) bool {
	for _, b := range bs {
		if !b.Honest() {
			return false
		}
	}
	return true
}

// finish mines past every lock time in steps of a few blocks, waiting at
// each step for the watchers: the payee settles each paid channel as its
// lock time comes within its margin, the payer refunds each pool still
// unspent at its lock time. It returns the payer's pools that never
// existed (funding coins spent by a later funding before it was broadcast:
// nothing to refund).
func (w *World) finish(t *testing.T, ctx context.Context) int {
	t.Helper()
	var last uint32
	for _, rec := range append(w.PayerDB.Records(t), w.PayeeDB.Records(t)...) {
		last = max(last, rec.Channel.ExpiryHeight)
	}
	settled := func(h uint32) bool {
		for _, rec := range w.PayeeDB.Records(t) {
			if rec.BestSat > 0 && rec.Channel.ExpiryHeight <= h+agent.DefaultSettleMargin && !w.Pool(t, rec).Spent {
				return false
			}
		}
		return true
	}
	for tip := w.Node.Tip(); tip <= last; tip = w.Node.Tip() {
		w.Node.Mine(4)
		tip = w.Node.Tip()
		if !Eventually(10*time.Second, func() bool { return settled(tip) }) {
			t.Logf("height %d: some paid channel due for settlement is not settled yet", tip)
		}
	}
	never := 0
	unspent := func() []*store.Record {
		var out []*store.Record
		never = 0
		for _, rec := range w.PayerDB.Records(t) {
			if rec.State == store.StateRefunded && rec.CloseTxID == "" {
				never++
				continue
			}
			if !w.Pool(t, rec).Spent {
				out = append(out, rec)
			}
		}
		return out
	}
	if !Eventually(20*time.Second, func() bool { return len(unspent()) == 0 }) {
		for _, rec := range unspent() {
			t.Logf("payer pool %s still unspent at height %d: %s, lock %d", rec.ID(), w.Node.Tip(), rec.State, rec.RefundTx.LockTime)
		}
	}
	w.Node.Mine(1)
	return never
}

func (p Plan) String() string { return fmt.Sprintf("%ds", p.Seconds) }
