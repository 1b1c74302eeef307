package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/store"
	"golang.org/x/sync/errgroup"
)

// ThroughputStep is the payee's throughput with a number of channels
// paying at once, each with one payment in flight (the protocol's rule).
type ThroughputStep struct {
	Channels     int     `json:"channels"`
	Payments     int64   `json:"payments"`
	Seconds      float64 `json:"seconds"`
	PaymentsPerS float64 `json:"payments_per_s"`
	// PaymentsPerCPUS is per second of the process's CPU time (the
	// payee's and, a small part, the in-memory payers').
	PaymentsPerCPUS float64 `json:"payments_per_cpu_s"`
	// ChannelsLost ended during the window (the payee closed them): they
	// pay no more, and the others go on.
	ChannelsLost int64 `json:"channels_lost"`
}

// throughputLevels are the concurrency steps up to n channels.
func throughputLevels(n int) []int {
	var out []int
	for _, k := range []int{1, 10, 100} {
		if k < n {
			out = append(out, k)
		}
	}
	return append(out, n)
}

// rig is one agent.Payee, with its own wallet and SQLite store, and
// bench payers each with a channel open to it over an in-memory
// connection; next is each payer's next payment.
type rig struct {
	payee  *agent.Payee
	db     *store.DB
	payers []*payer
	next   []int64
	stop   func()
}

// close ends the sessions and closes the store.
func (g *rig) close() {
	for _, pc := range g.payers {
		if pc != nil {
			pc.conn.Close()
		}
	}
	g.stop()
	g.db.Close()
}

// openRig opens n channels to a new payee in dir.
func (r *run) openRig(ctx context.Context, dir string, n int) (*rig, error) {
	payeeW, err := r.wallet(filepath.Join(dir, "payee.json"))
	if err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(dir, "payee.db"))
	if err != nil {
		return nil, err
	}
	payee := &agent.Payee{Wallet: payeeW, Chain: r.node.chain, Store: db, Log: r.log, PriceSatPerMin: price,
		Poll: 100 * time.Millisecond, KeepOpen: true,
		// The bench's payers pay as fast as they are acknowledged: the
		// per-session flood bound would measure itself, not the payee.
		MaxPaymentsPerSec: math.MaxInt32, PaymentBurst: math.MaxInt32}
	sctx, stopSessions := context.WithCancel(ctx)
	var sessions sync.WaitGroup
	g := &rig{payee: payee, db: db, payers: make([]*payer, n), next: make([]int64, n), stop: func() { stopSessions(); sessions.Wait() }}
	fail := func(err error) (*rig, error) {
		g.close()
		return nil, err
	}
	payerW, err := r.wallet(filepath.Join(dir, "payer.json"))
	if err != nil {
		return fail(err)
	}
	pw, err := newPayerWallet(payerW)
	if err != nil {
		return fail(err)
	}
	r.say("throughput: funding %d channels", n)
	coins, err := r.node.coins(ctx, pw.script, n, capacity+coinFee)
	if err != nil {
		return fail(err)
	}
	var opened atomic.Int64
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(openers)
	for i := range g.payers {
		eg.Go(func() error {
			a, b := agent.Pipe()
			sessions.Add(1)
			go func() {
				defer sessions.Done()
				_, err := payee.Serve(sctx, b, fmt.Sprintf("sip:payer%d@bench.invalid", i))
				if err != nil && sctx.Err() == nil && !errors.Is(err, agent.ErrConnClosed) {
					// A session the payee ended by itself: the bench says why.
					r.log.Warn("bench: a payee session ended", "component", "bench", "channel", i, "err", err)
				}
			}()
			pc, err := openPayer(gctx, a, pw, r.node.chain, coins[i], capacity, price)
			if err != nil {
				a.Close()
				return fmt.Errorf("channel %d: %w", i, err)
			}
			g.payers[i] = pc
			if k := opened.Add(1); k%100 == 0 {
				r.say("throughput: %d channels open", k)
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return fail(err)
	}
	// Confirm the fundings: the sessions stop watching them.
	if err := r.node.mine(1); err != nil {
		return fail(err)
	}
	for i, pc := range g.payers {
		if g.next[i], err = pc.firstPayment(); err != nil {
			return fail(err)
		}
	}
	return g, nil
}

// presign signs per payments ahead for each of the first k payers, on
// all cores.
func (g *rig) presign(k, per int) ([][][]byte, error) {
	signed := make([][][]byte, k)
	sg := errgroup.Group{}
	sg.SetLimit(runtime.GOMAXPROCS(0))
	for i := range k {
		sg.Go(func() error {
			var err error
			signed[i], err = g.payers[i].presign(g.next[i], 1, per)
			g.next[i] += int64(per)
			return err
		})
	}
	return signed, sg.Wait()
}

// throughput opens r.cfg.Channels channels to one agent.Payee (its own
// wallet and SQLite store, over in-memory connections), then for each
// concurrency level sends payments signed beforehand, as fast as the
// payee acknowledges them, for r.cfg.Duration.
func (r *run) throughput(ctx context.Context) ([]ThroughputStep, error) {
	n := r.cfg.Channels
	g, err := r.openRig(ctx, filepath.Join(r.dir, "throughput"), n)
	if err != nil {
		return nil, err
	}
	defer g.close()
	payers := g.payers
	var steps []ThroughputStep
	for _, k := range throughputLevels(n) {
		// Enough signed payments for the window at the rate this level
		// can reach (one in flight per channel, a group commit each
		// ~millisecond, at most the verification ceiling); a channel
		// that runs out ends the window early, which the rate accounts for.
		reach := min(r.estimate, float64(k)*1500)
		per := int(math.Ceil(reach*r.cfg.Duration.Seconds()*1.1/float64(k))) + 1
		signed, err := g.presign(k, per)
		if err != nil {
			return nil, err
		}
		// The top level sits between two measures of the verification
		// ceilings (stock and keyed), half a window each: the ratios
		// compare neighbours.
		if k == n {
			if err := r.ceiling(ctx); err != nil {
				return nil, err
			}
		}
		var stopProfile func()
		if k == n && r.cfg.ProfileDir != "" {
			if stopProfile, err = startProfile(filepath.Join(r.cfg.ProfileDir, "payee-throughput.pprof")); err != nil {
				return nil, err
			}
		}
		st, err := sendSigned(ctx, payers[:k], signed, r.cfg.Duration)
		if stopProfile != nil {
			stopProfile()
		}
		if err != nil {
			return nil, err
		}
		if k == n {
			if err := r.ceiling(ctx); err != nil {
				return nil, err
			}
		}
		r.say("throughput: %d channels: %.0f payments/s (%d channels lost)", k, st.PaymentsPerS, st.ChannelsLost)
		steps = append(steps, st)
	}
	return steps, nil
}

// ackType marks an ack among the payee's messages (paywire encodes the
// type as this field).
var ackType = []byte(`"type":"` + paywire.TypeAck + `"`)

// sendSigned has each payer send its signed payments one at a time, each
// after the previous one's ack, until d passes or one payer has sent all
// of its own; it counts the payments acknowledged meanwhile.
func sendSigned(ctx context.Context, payers []*payer, signed [][][]byte, d time.Duration) (ThroughputStep, error) {
	var acked, lost atomic.Int64
	var stop atomic.Bool
	var firstErr error
	var once sync.Once
	fail := func(err error) {
		once.Do(func() { firstErr = err })
		stop.Store(true)
	}
	lostOrFail := func(err error) {
		if !errors.Is(err, agent.ErrConnClosed) {
			fail(err)
			return
		}
		if lost.Add(1) == int64(len(payers)) {
			fail(errors.New("every channel was closed by the payee"))
		}
	}
	var wg sync.WaitGroup
	cpu0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return ThroughputStep{}, err
	}
	start := time.Now()
	for i, pc := range payers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range signed[i] {
				if stop.Load() {
					return
				}
				if err := pc.conn.Send(ctx, b); err != nil {
					lostOrFail(err)
					return
				}
				reply, err := pc.conn.Recv(ctx)
				if err != nil {
					lostOrFail(err)
					return
				}
				// Not decoded: the payers' CPU is counted with the payee's
				// (per CPU second), so they do as little as they can. A
				// refusal is an error message, not an ack.
				if !bytes.Contains(reply, ackType) {
					fail(fmt.Errorf("payee answered %s", reply))
					return
				}
				acked.Add(1)
			}
			stop.Store(true) // out of signed payments: the window ends
		}()
	}
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	// The window ends at the first stop; payments acknowledged while the
	// others finish their one in flight are not counted.
	for !stop.Load() {
		time.Sleep(time.Millisecond)
	}
	count, elapsed := acked.Load(), time.Since(start)
	rt, err := measured(float64(count), elapsed, cpu0)
	wg.Wait()
	if firstErr != nil {
		return ThroughputStep{}, firstErr
	}
	if ctx.Err() != nil {
		return ThroughputStep{}, ctx.Err()
	}
	if count == 0 {
		return ThroughputStep{}, errors.New("no payment acknowledged")
	}
	if err != nil {
		return ThroughputStep{}, err
	}
	return ThroughputStep{Channels: len(payers), Payments: count, Seconds: elapsed.Seconds(), PaymentsPerS: rt.PerS, PaymentsPerCPUS: rt.PerCPUS, ChannelsLost: lost.Load()}, nil
}

// startProfile writes a CPU profile to path until the returned function.
func startProfile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
