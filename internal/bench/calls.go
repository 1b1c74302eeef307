package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/txbuild"
	"golang.org/x/sync/errgroup"
)

// CallStep is one step of the concurrent calls: the calls held at once,
// and what happened during a window of Seconds with all of them paying
// once a second.
type CallStep struct {
	Calls    int     `json:"calls"`
	Seconds  float64 `json:"seconds"`
	Payments int64   `json:"payments"`
	// LatePayments were acknowledged after the next one was due (more
	// than a tick after they were due), or not at all.
	LatePayments int64 `json:"late_payments"`
	// CallsLost have ended by the window's end, during it or before (the
	// payee hung up, the WebRTC session closed, or a payment failed).
	CallsLost int64 `json:"calls_lost"`
	// AudioFrames is the 20 ms G.711 frames the payers received from the
	// payee's tone; AudioDropPct how many of those due were missing.
	AudioFrames  int64   `json:"audio_frames"`
	AudioDropPct float64 `json:"audio_drop_pct"`
	// AudioSentLate and AudioSkipped are the payee's tone frames sent a
	// tick or more late, and never sent (due over 100 ms before its audio
	// clock could send them), during the window (its metrics).
	AudioSentLate int64 `json:"audio_sent_late"`
	AudioSkipped  int64 `json:"audio_skipped"`
	// CallsSilent received no audio frame during the window, CallsStalled
	// made no payment (what a failing step's missing frames and payments
	// are: a few calls stuck, or all calls short).
	CallsSilent  int64 `json:"calls_silent"`
	CallsStalled int64 `json:"calls_stalled"`
	// LostReason is why the first lost call ended.
	LostReason string `json:"lost_reason,omitempty"`
	// PayeeCPUPct is the payee process's CPU time during the window, in
	// percent of one core; PayerCPUPct the same for the bench process
	// (all the payers, their WebRTC sessions, the SIP server).
	PayeeCPUPct float64 `json:"payee_cpu_pct"`
	PayerCPUPct float64 `json:"payer_cpu_pct"`
	// PayeeRSSKiB is the payee process's resident memory at the window's end.
	PayeeRSSKiB int64     `json:"payee_rss_kib"`
	RTTP50ms    float64   `json:"rtt_p50_ms"`
	RTTP99ms    float64   `json:"rtt_p99_ms"`
	rtts        []float64 // ms, every payment of the window
}

// clean reports whether the step held: no late payment, no call lost, and
// under 1% of the audio frames missing (the frames in flight at the
// window's two ends are within that).
func (s CallStep) clean() bool {
	return s.LatePayments == 0 && s.CallsLost == 0 && s.AudioDropPct < 1
}

// callLevels are the steps up to n calls.
func callLevels(n int) []int {
	var out []int
	for _, k := range []int{10, 25, 50, 100, 250, 500} {
		if k < n {
			out = append(out, k)
		}
	}
	return append(out, n)
}

// rttCalls is how many concurrent calls the round trip is measured at.
const rttCalls = 100

// payeeProc is the 'paysip payee' process under test.
type payeeProc struct {
	cmd     *exec.Cmd
	metrics string // http://host:port/metrics
	exited  chan struct{}
	out     *lockedBuffer
}

// call is one bench caller's call: its leg and channel, and its counters.
type call struct {
	leg    *paidcall.Leg
	pc     *payer
	ended  atomic.Bool
	frames func() int64
	paid   atomic.Int64 // payments acknowledged
	err    atomic.Value // error: why it ended
}

// window collects what the calls did during one measurement window.
type window struct {
	mu       sync.Mutex
	on       atomic.Bool
	payments atomic.Int64
	late     atomic.Int64
	rtts     []float64
}

func (w *window) record(rtt time.Duration, late bool) {
	if !w.on.Load() {
		return
	}
	w.payments.Add(1)
	if late {
		w.late.Add(1)
	}
	w.mu.Lock()
	w.rtts = append(w.rtts, float64(rtt)/float64(time.Millisecond))
	w.mu.Unlock()
}

// calls runs the WebRTC steps: a SIP server here, 'paysip payee' in its
// own process (so its CPU and memory are its own), and the callers here,
// stepping up to r.cfg.Calls concurrent calls until a step is not clean
// (and the round trip's step, rttCalls, was run).
func (r *run) calls(ctx context.Context) ([]CallStep, error) {
	n := r.cfg.Calls
	dir := filepath.Join(r.dir, "calls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	const domain = "bench.invalid"
	srv, err := sipserver.New(sipserver.Config{Domain: domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Open: true, Log: r.log,
		Limits: sipserver.Limits{RequestRate: -1, InputRate: -1, MaxConnsPerIP: 4096, MaxConns: 8192}})
	if err != nil {
		return nil, err
	}
	sctx, stopSrv := context.WithCancel(ctx)
	defer stopSrv()
	go srv.Run(sctx)
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		return nil, errors.New("SIP server did not start")
	}
	proxy := fmt.Sprintf("127.0.0.1:%d", srv.SIPPort())
	p, err := r.startPayee(ctx, dir, proxy, "sip:tutor@"+domain)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if r.cfg.ProfileDir != "" {
		// The callers' side (this process) over the calls phase.
		stopProfile, err := startProfile(filepath.Join(r.cfg.ProfileDir, "callers-calls.pprof"))
		if err != nil {
			return nil, err
		}
		defer stopProfile()
	}
	baseRSS, err := rssKiB(p.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}

	payerW, err := r.wallet(filepath.Join(dir, "payer.json"))
	if err != nil {
		return nil, err
	}
	pw, err := newPayerWallet(payerW)
	if err != nil {
		return nil, err
	}
	r.say("calls: funding %d channels", n)
	coins, err := r.node.coins(ctx, pw.script, n, capacity+coinFee)
	if err != nil {
		return nil, err
	}
	uas := make([]*sipua.UA, callerUAs)
	for i := range uas {
		if uas[i], err = sipua.New(sipua.Config{AOR: fmt.Sprintf("sip:caller%d@%s", i, domain), Proxy: proxy, Log: r.log}); err != nil {
			return nil, err
		}
		defer uas[i].Close()
	}
	var to sip.Uri
	if err := sip.ParseUri("sip:tutor@"+domain, &to); err != nil {
		return nil, err
	}

	var calls []*call
	var callsWG sync.WaitGroup
	cctx, stopCalls := context.WithCancel(ctx)
	defer func() {
		stopCalls()
		for _, c := range calls {
			c.leg.Hangup(context.Background(), "")
		}
		callsWG.Wait()
	}()
	w := &window{}
	var steps []CallStep
	for _, level := range callLevels(n) {
		// Dial the calls this level adds, a few at a time (the payee
		// bounds the channels being opened at once).
		added := make([]*call, level-len(calls))
		var dialed atomic.Int64
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(openers)
		for i := range added {
			idx := len(calls) + i
			g.Go(func() error {
				c, err := r.dial(gctx, uas[idx%len(uas)], to, pw, coins[idx])
				if err != nil {
					return fmt.Errorf("call %d: %w", idx+1, err)
				}
				added[i] = c
				// It pays from now, as a caller does: the payee hangs
				// up on a channel left unpaid past its grace.
				callsWG.Add(1)
				go func() { defer callsWG.Done(); c.run(cctx, r.cfg.Tick, w) }()
				if k := len(calls) + int(dialed.Add(1)); k%100 == 0 {
					r.say("calls: %d calls paying", k)
				}
				return nil
			})
		}
		err := g.Wait()
		for _, c := range added {
			if c != nil {
				calls = append(calls, c)
			}
		}
		if err != nil {
			if len(steps) == 0 {
				return steps, err
			}
			// Past the knee the calls cannot even be set up: the
			// ramp ends at the last step measured.
			r.say("calls: %d: %v: the ramp stops", level, err)
			break
		}
		// Confirm the new fundings: the payee stops watching them.
		if err := r.node.mine(1); err != nil {
			return steps, err
		}
		time.Sleep(2 * r.cfg.Tick) // every call paying on its clock
		st, err := r.measure(ctx, p, calls, w)
		if err != nil {
			return steps, err
		}
		if st.LostReason != "" {
			r.say("calls: %d: a call lost: %s (the payee: %s)", st.Calls, st.LostReason, p.out.lastEnded())
		}
		r.say("calls: %d: %d payments, %d late, %d lost (%d silent, %d stalled), audio %.2f%% missing (payee: %d frames sent late, %d skipped), payee CPU %.1f%% (%.3f%%/call), callers CPU %.1f%% (%.3f%%/call), RSS %d KiB, rtt p50 %.2f ms p99 %.2f ms",
			st.Calls, st.Payments, st.LatePayments, st.CallsLost, st.CallsSilent, st.CallsStalled, st.AudioDropPct, st.AudioSentLate, st.AudioSkipped, st.PayeeCPUPct, st.PayeeCPUPct/float64(st.Calls),
			st.PayerCPUPct, st.PayerCPUPct/float64(st.Calls), st.PayeeRSSKiB, st.RTTP50ms, st.RTTP99ms)
		steps = append(steps, st)
		// Past the knee, on only as far as the round trip's step.
		if !st.clean() && st.Calls >= rttCalls {
			break
		}
	}
	r.baseRSSKiB = baseRSS
	if r.res.PayeeMetrics, err = scrapeMetrics(ctx, p.metrics); err != nil {
		return steps, fmt.Errorf("payee metrics: %w", err)
	}
	return steps, nil
}

// measure runs one window of r.cfg.Duration over the calls.
func (r *run) measure(ctx context.Context, p *payeeProc, calls []*call, w *window) (CallStep, error) {
	frames0 := make([]int64, len(calls))
	paid0 := make([]int64, len(calls))
	for i, c := range calls {
		frames0[i], paid0[i] = c.frames(), c.paid.Load()
	}
	w.mu.Lock()
	w.rtts = nil
	w.mu.Unlock()
	w.payments.Store(0)
	w.late.Store(0)
	late0, skipped0, err := audioMetrics(ctx, p.metrics)
	if err != nil {
		return CallStep{}, err
	}
	pid := p.cmd.Process.Pid
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return CallStep{}, err
	}
	self0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return CallStep{}, err
	}
	start := time.Now()
	w.on.Store(true)
	select {
	case <-time.After(r.cfg.Duration):
	case <-ctx.Done():
		return CallStep{}, ctx.Err()
	case <-p.exited:
		return CallStep{}, fmt.Errorf("the payee process exited: %s", p.out.tail())
	}
	w.on.Store(false)
	secs := time.Since(start).Seconds()
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return CallStep{}, err
	}
	self1, err := cpuSeconds(os.Getpid())
	if err != nil {
		return CallStep{}, err
	}
	rss, err := rssKiB(pid)
	if err != nil {
		return CallStep{}, err
	}
	late1, skipped1, err := audioMetrics(ctx, p.metrics)
	if err != nil {
		return CallStep{}, err
	}
	st := CallStep{AudioSentLate: late1 - late0, AudioSkipped: skipped1 - skipped0, Calls: len(calls), Seconds: secs, Payments: w.payments.Load(), LatePayments: w.late.Load(),
		PayeeCPUPct: 100 * (cpu1 - cpu0) / secs, PayerCPUPct: 100 * (self1 - self0) / secs, PayeeRSSKiB: rss}
	for i, c := range calls {
		f := c.frames() - frames0[i]
		st.AudioFrames += f
		if f == 0 {
			st.CallsSilent++
		}
		if c.ended.Load() {
			st.CallsLost++ // this window's or before: no longer a call
			if err, ok := c.err.Load().(error); ok && st.LostReason == "" {
				st.LostReason = err.Error()
			}
		}
		if c.paid.Load() == paid0[i] {
			st.CallsStalled++
		}
	}
	// A call pays every tick: one payment missing from the window is late
	// too (the ack never came, or the payer could not send it).
	due := int64(secs/r.cfg.Tick.Seconds()) * int64(len(calls))
	if miss := due - st.Payments - int64(len(calls)); miss > 0 {
		st.LatePayments += miss
	}
	// Up to two frames a call may fall on the far side of the window's
	// ends without having been dropped.
	expected := secs / 0.020 * float64(len(calls))
	if missing := expected - float64(st.AudioFrames) - 2*float64(len(calls)); missing > 0 {
		st.AudioDropPct = 100 * missing / expected
	}
	w.mu.Lock()
	st.rtts = slices.Clone(w.rtts)
	w.mu.Unlock()
	slices.Sort(st.rtts)
	st.RTTP50ms, st.RTTP99ms = percentile(st.rtts, 50), percentile(st.rtts, 99)
	return st, nil
}

// audioMetrics reads the payee's tone frames sent late and skipped so far
// (rtcconn's counters at its /metrics).
func audioMetrics(ctx context.Context, url string) (late, skipped int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		var dst *int64
		switch name {
		case "paysip_audio_frames_late_total":
			dst = &late
		case "paysip_audio_frames_skipped_total":
			dst = &skipped
		}
		if !ok || dst == nil {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("metrics line %q: %w", sc.Text(), err)
		}
		*dst = int64(f)
	}
	return late, skipped, sc.Err()
}

// dial places one call to the payee and opens its channel.
func (r *run) dial(ctx context.Context, ua *sipua.UA, to sip.Uri, pw *payerWallet, coin txbuild.Coin) (*call, error) {
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	leg, err := paidcall.Dial(dctx, ua, to, rtcconn.Config{LoopbackOnly: true}, sipext.TransportDataChannel)
	if err != nil {
		return nil, err
	}
	pc, err := openPayer(dctx, leg.Conn, pw, r.node.chain, coin, capacity, price)
	if err != nil {
		leg.Hangup(ctx, "")
		return nil, err
	}
	return &call{leg: leg, pc: pc, frames: leg.Peer.ReceivedPackets}, nil
}

// run pays once a tick, as a caller does, until ctx ends, a payment
// fails or the call ends (a BYE: the payee hung up); each payment's round
// trip and lateness go to w.
func (c *call) run(ctx context.Context, tick time.Duration, w *window) {
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.leg.Call.Done():
			cancel()
		case <-callCtx.Done():
		}
	}()
	paid, err := c.pc.firstPayment()
	if err != nil {
		c.ended.Store(true)
		return
	}
	step := paid
	if sec, err := c.pc.secondPrice(); err == nil {
		step = sec
	}
	start := time.Now()
	for k := 0; ; k++ {
		due := start.Add(time.Duration(k) * tick)
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		rtt, err := c.pc.pay(callCtx, paid)
		if err != nil {
			if ctx.Err() == nil {
				if callCtx.Err() != nil {
					err = errors.New("the payee hung up (BYE)")
				}
				c.err.Store(err)
				c.ended.Store(true)
			}
			return
		}
		c.paid.Add(1)
		w.record(rtt, time.Now().After(due.Add(tick)))
		paid += step
		if paid > capacity-step {
			return // the pool is spent (a very long bench)
		}
	}
}

// startPayee runs 'paysip payee' on the bench's node and SIP server and
// waits until it is registered.
func (r *run) startPayee(ctx context.Context, dir, proxy, aor string) (*payeeProc, error) {
	n := r.node.btcd
	cmd := exec.Command(r.cfg.Exe, "payee", "--aor", aor, "--price", fmt.Sprint(price), "--tone", "--keep-open", "--quiet",
		"--metrics", "127.0.0.1:0", "--datadir", filepath.Join(dir, "payee"), "--loopback", "--sip-server", proxy,
		"--tick", r.cfg.Tick.String(), "--btcd-rpc", n.RPCAddr, "--btcd-user", n.RPCUser, "--btcd-pass", n.RPCPass)
	if r.cfg.ProfileDir != "" {
		if err := os.MkdirAll(r.cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
		cmd.Args = append(cmd.Args, "--cpu-profile", filepath.Join(r.cfg.ProfileDir, "payee-calls.pprof"))
	}
	cmd.Env = r.childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	out := &lockedBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &payeeProc{cmd: cmd, exited: make(chan struct{}), out: out}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if m, ok := strings.CutPrefix(line, "metrics at "); ok {
				p.metrics = m
			}
			if strings.HasPrefix(line, "payee ") && strings.Contains(line, " ready ") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(p.exited) }()
	select {
	case <-ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("paysip payee exited: %s", out.tail())
	case <-time.After(time.Minute):
		p.stop()
		return nil, fmt.Errorf("paysip payee not ready after a minute: %s", out.tail())
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop ends the payee process: SIGTERM, then SIGKILL after 10 s.
func (p *payeeProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// childEnv is the environment of a child paysip: without the user's
// PAYSIP_ settings (data directory, node, passwords), with the btcd binary
// found once.
func (r *run) childEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PAYSIP_") {
			env = append(env, e)
		}
	}
	return append(env, "PAYSIP_BTCD="+r.btcdBin)
}

// lockedBuffer keeps the last output of a child process, for errors.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		b.buf = slices.Clone(b.buf[len(b.buf)-32<<10:])
	}
	return len(p), nil
}

// lastEnded is the payee's last line about a call that ended on an error.
func (b *lockedBuffer) lastEnded() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(string(b.buf), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], " ended: ") && !strings.HasSuffix(lines[i], "(ok)") {
			return lines[i]
		}
	}
	return "no call ended on an error"
}

func (b *lockedBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := string(b.buf)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}
