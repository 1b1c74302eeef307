package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/wallet"
)

// The bench's channels and calls.
const (
	price     = 60_000    // sat/min: 1,000 sat a second, as the demo
	capacity  = 1_000_000 // sat per pool: the payee's zero-conf limit, 1,000 s of call
	coinFee   = 2_000     // sat set aside in each payer coin for its funding's fee
	openers   = 16        // channels opened at once (the payee admits 64)
	callerUAs = 8         // SIP user agents sharing the calls
)

// Config says what to measure and how much.
type Config struct {
	// Exe is the paysip binary run as the payee process and for the demo
	// (default: this program).
	Exe string
	// Channels is the number of concurrent channels of the throughput
	// phase (its top level); Calls the concurrent calls of the last step.
	Channels, Calls int
	// Duration is each measurement window (the verification ceiling,
	// each throughput level, each calls step).
	Duration time.Duration
	// Tick is the calls' payment interval (1 s, as a call pays).
	Tick time.Duration
	// NoDemo skips the demo's start time.
	NoDemo bool
	// ProfileDir, if set, receives CPU profiles: payee-throughput.pprof
	// (this process, the top throughput level), payee-calls.pprof (the
	// payee process, from its start to its end) and callers-calls.pprof
	// (this process during the calls: the callers and the SIP server).
	ProfileDir string
	// Log receives the components' logs (nil: warnings to stderr);
	// Progress one line per step (nil: none).
	Log      *slog.Logger
	Progress io.Writer
}

// Result is what 'paysip bench --json' prints.
type Result struct {
	Machine Machine `json:"machine"`
	Started string  `json:"started"`

	VerifyCeilingPerS float64 `json:"verify_ceiling_per_s"`
	PayeePaymentsPerS float64 `json:"payee_payments_per_s"`
	PayeeRatio        float64 `json:"payee_ratio"`
	// The keyed ceiling: verifications per second with a precomputed
	// verifier of the key (package sigcheck), as the payee checks a
	// channel's payments, measured in the same windows as the ceiling.
	// PayeeRatioKeyed is the payee's rate over it: its overhead beyond
	// the verification it cannot avoid.
	KeyedVerifyCeilingPerS    float64   `json:"keyed_verify_ceiling_per_s"`
	PayeeRatioKeyed           float64   `json:"payee_ratio_keyed"`
	KeyedVerifyCeilingPerCPUS float64   `json:"keyed_verify_ceiling_per_cpu_s"`
	PayeeRatioKeyedCPU        float64   `json:"payee_ratio_keyed_cpu"`
	KeyedVerifyCeilings       []float64 `json:"keyed_verify_ceilings_per_s"`
	// The same per second of the process's CPU time: on a machine shared
	// with other work, the ratio that does not depend on the share of the
	// cores the bench got in each window. VerifyCeilings are the two
	// windows around the throughput's (their mean is the ceiling).
	VerifyCeilingPerCPUS float64          `json:"verify_ceiling_per_cpu_s"`
	PayeePaymentsPerCPUS float64          `json:"payee_payments_per_cpu_s"`
	PayeeRatioCPU        float64          `json:"payee_ratio_cpu"`
	VerifyCeilings       []float64        `json:"verify_ceilings_per_s"`
	PayeeChannels        int              `json:"payee_channels"`
	Throughput           []ThroughputStep `json:"throughput"`
	RTTCalls             int              `json:"rtt_calls"`
	RTTP50ms             float64          `json:"rtt_p50_ms"`
	RTTP99ms             float64          `json:"rtt_p99_ms"`
	RTTSamplesMs         []float64        `json:"rtt_samples_ms"`
	// DiskFsync is the disk's own cost of one durable commit (diskFlush),
	// measured in the same run: the floor under the round trip.
	DiskFsyncP50ms     float64    `json:"disk_fsync_p50_ms"`
	DiskFsyncP99ms     float64    `json:"disk_fsync_p99_ms"`
	CallsTarget        int        `json:"calls_target"`
	ConcurrentCalls    int        `json:"concurrent_calls"`
	LatePayments       int64      `json:"late_payments"`
	CPUPerCallPct      float64    `json:"cpu_per_call_pct"`
	MemPerCallKiB      float64    `json:"mem_per_call_kib"`
	CallSteps          []CallStep `json:"call_steps"`
	DemoFirstPaidSecS  float64    `json:"demo_first_paid_second_s"`
	DurationS          float64    `json:"window_s"`
	TotalS             float64    `json:"total_s"`
	PayeeBaseRSSKiB    int64      `json:"payee_base_rss_kib"`
	VerifyWorkers      int        `json:"verify_workers"`
	ThroughputPayments int64      `json:"throughput_payments"`
	// LoadAvg is the machine's 1-minute load average at the start and the
	// end of the run: how many threads wanted the cores meanwhile.
	LoadAvg []float64 `json:"load_avg"`
	// PayeeMetrics is the payee process's own count (its /metrics).
	PayeeMetrics PayeeMetrics `json:"payee_metrics"`
}

// Machine is where the figures come from.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Secp256k1  string `json:"secp256k1"`
	Btcec      string `json:"btcec"`
}

// run is one bench run's state.
type run struct {
	cfg        Config
	dir        string
	log        *slog.Logger
	node       *node
	res        *Result
	btcdBin    string
	baseRSSKiB int64
	estimate   float64 // a first keyed verification rate, to size the signed payments
	ceilings   []rate
	keyed      []rate
}

// ceiling measures the verification ceiling, stock and keyed, for half a
// window each, in turn: stock first on even calls, keyed first on odd ones,
// so that the two calls around the throughput's window see the same drift.
func (r *run) ceiling(ctx context.Context) error {
	order := []bool{false, true}
	if len(r.ceilings)%2 == 1 {
		order = []bool{true, false}
	}
	var c, k rate
	for _, keyed := range order {
		m, err := verifyCeiling(ctx, r.cfg.Duration/2, keyed)
		if err != nil {
			return err
		}
		if keyed {
			k = m
		} else {
			c = m
		}
	}
	r.ceilings, r.keyed = append(r.ceilings, c), append(r.keyed, k)
	r.say("verification ceiling: %.0f/s (%.0f per CPU second); keyed %.0f/s (%.0f per CPU second)", c.PerS, c.PerCPUS, k.PerS, k.PerCPUS)
	return nil
}

func (r *run) say(format string, a ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", a...)
	}
}

// wallet creates a wallet file on the bench's node.
func (r *run) wallet(path string) (*wallet.Wallet, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	w, _, err := wallet.Create(path, r.node.chain, "")
	return w, err
}

// Run measures everything once, in a temporary directory it removes.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Channels < 1 || cfg.Calls < 1 || cfg.Duration <= 0 {
		return nil, errors.New("bench: channels, calls and duration must be positive")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	dir, err := os.MkdirTemp("", "paysip-bench-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	began := time.Now()
	r := &run{cfg: cfg, dir: dir, log: log, res: &Result{Machine: machine(), Started: began.UTC().Format(time.RFC3339),
		PayeeChannels: cfg.Channels, CallsTarget: cfg.Calls, DurationS: cfg.Duration.Seconds(), VerifyWorkers: runtime.GOMAXPROCS(0)}}
	r.res.LoadAvg = append(r.res.LoadAvg, loadAvg())
	if r.btcdBin, err = btcnode.Binary(ctx); err != nil {
		return nil, err
	}
	if !cfg.NoDemo {
		// First, on a quiet machine (nothing else of the bench runs yet).
		r.say("demo: time to the first paid second")
		if r.res.DemoFirstPaidSecS, err = r.demo(ctx); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	r.say("starting btcd (regtest)")
	if r.node, err = startNode(ctx, dir, log); err != nil {
		return nil, err
	}
	defer r.node.close()

	est, err := verifyCeiling(ctx, time.Second, true)
	if err != nil {
		return nil, err
	}
	r.estimate = est.PerS
	if r.res.Throughput, err = r.throughput(ctx); err != nil {
		return nil, fmt.Errorf("throughput: %w", err)
	}
	top := r.res.Throughput[len(r.res.Throughput)-1]
	r.res.PayeePaymentsPerS, r.res.PayeePaymentsPerCPUS, r.res.ThroughputPayments = top.PaymentsPerS, top.PaymentsPerCPUS, top.Payments
	for _, c := range r.ceilings {
		r.res.VerifyCeilings = append(r.res.VerifyCeilings, c.PerS)
		r.res.VerifyCeilingPerS += c.PerS / float64(len(r.ceilings))
		r.res.VerifyCeilingPerCPUS += c.PerCPUS / float64(len(r.ceilings))
	}
	for _, c := range r.keyed {
		r.res.KeyedVerifyCeilings = append(r.res.KeyedVerifyCeilings, c.PerS)
		r.res.KeyedVerifyCeilingPerS += c.PerS / float64(len(r.keyed))
		r.res.KeyedVerifyCeilingPerCPUS += c.PerCPUS / float64(len(r.keyed))
	}
	r.res.PayeeRatio = top.PaymentsPerS / r.res.VerifyCeilingPerS
	r.res.PayeeRatioCPU = top.PaymentsPerCPUS / r.res.VerifyCeilingPerCPUS
	r.res.PayeeRatioKeyed = top.PaymentsPerS / r.res.KeyedVerifyCeilingPerS
	r.res.PayeeRatioKeyedCPU = top.PaymentsPerCPUS / r.res.KeyedVerifyCeilingPerCPUS

	steps, err := r.calls(ctx)
	if err != nil {
		return nil, fmt.Errorf("calls: %w", err)
	}
	r.res.CallSteps = steps
	if r.res.DiskFsyncP50ms, r.res.DiskFsyncP99ms, err = diskFlush(r.diskDir(), 200); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	r.res.PayeeBaseRSSKiB = r.baseRSSKiB
	r.summarizeCalls()
	r.res.TotalS = time.Since(began).Seconds()
	r.res.LoadAvg = append(r.res.LoadAvg, loadAvg())
	return r.res, nil
}

// summarizeCalls takes the round trip from the step at rttCalls calls (or
// the first), and the knee: the last clean step.
func (r *run) summarizeCalls() {
	res := r.res
	knee := true
	for i, st := range res.CallSteps {
		if i == 0 || st.Calls <= rttCalls {
			res.RTTCalls, res.RTTP50ms, res.RTTP99ms, res.RTTSamplesMs = st.Calls, st.RTTP50ms, st.RTTP99ms, st.rtts
		}
		res.LatePayments += st.LatePayments
		// The knee: the last step of the clean ones from the first on.
		if knee = knee && st.clean(); knee {
			res.ConcurrentCalls = st.Calls
		}
	}
	// CPU and memory per call at the knee (or at the first step when no
	// step was clean).
	at := res.CallSteps[0]
	for _, st := range res.CallSteps {
		if st.Calls == res.ConcurrentCalls {
			at = st
		}
	}
	res.CPUPerCallPct = at.PayeeCPUPct / float64(at.Calls)
	res.MemPerCallKiB = float64(at.PayeeRSSKiB-r.baseRSSKiB) / float64(at.Calls)
}

// demo runs 'paysip demo' and returns the seconds from its start to its
// first paid second (its first progress line), then lets it finish.
func (r *run) demo(ctx context.Context) (float64, error) {
	cmd := exec.CommandContext(ctx, r.cfg.Exe, "demo", "--seconds", "1")
	cmd.Env = r.childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	errBuf := &lockedBuffer{}
	cmd.Stderr = errBuf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	first := time.Duration(0)
	rd := bufio.NewReader(stdout)
	var seen bytes.Buffer
	for {
		b, err := rd.ReadByte()
		if err != nil {
			break
		}
		seen.WriteByte(b)
		if first == 0 && bytes.Contains(seen.Bytes(), []byte("payer: paid")) {
			first = time.Since(start)
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, errBuf.tail())
	}
	if first == 0 {
		return 0, fmt.Errorf("no paid second in its output: %s", seen.String())
	}
	return first.Seconds(), nil
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/decred/dcrd/dcrec/secp256k1/v4":
				m.Secp256k1 = d.Version
			case "github.com/btcsuite/btcd/btcec/v2":
				m.Btcec = d.Version
			}
		}
	}
	return m
}

// loadAvg is the 1-minute load average (0 where /proc has none).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
