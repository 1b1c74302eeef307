// Command perf runs issue 13's targets 1 and 2 from outside, with sipp,
// against 'paysip serve' and Kamailio 5.6, and prints the ratios:
//
//   - register_open: REGISTER over UDP, every REGISTER a new binding,
//     against 'paysip serve --open' and Kamailio as an in-memory registrar;
//   - register_auth: the same with digest authentication (401, then the
//     REGISTER with credentials), paysip's accounts against Kamailio's
//     auth_db on a db_text table of the same users;
//   - call: INVITE/180/200/ACK/BYE from a sipp caller through the proxy
//     (record-routed, the callee found by its registration) to a sipp
//     callee, against paysip and Kamailio as a stateful (tm)
//     record-routing proxy with one worker.
//
// Each server runs pinned to one core (taskset), sipp on the other. The
// servers alternate (paysip first in odd rounds, Kamailio first in even
// ones) and every test is repeated -rounds times, because single runs on a
// shared machine swing by a third. Each test climbs a ladder of offered
// rates, -dur at each; a step is clean when every call succeeded, nothing
// was retransmitted (by either sipp) and the achieved rate is at least 95%
// of the offered one. The CPU time the server spent in each step is read
// from /proc (utime+stime of paysip's process; of every process of
// Kamailio's process group), per call.
//
// It writes every step to -out as JSON (format: Result) and prints, per
// test, the best clean rate of each server, the ratio paysip/Kamailio of
// the best rates and of each round, and for calls the CPU per call at
// -cpu-rate. Where sipp, kamailio or taskset is missing it says so and
// exits 0 (1 under PAYSIP_REQUIRE_INTEROP=1).
//
//	go run ./interop/perf                 # everything, 2 rounds (~15 min)
//	go run ./interop/perf -tests call -rounds 3
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

const domain = "paysip.test"

// Result is the JSON written to -out.
type Result struct {
	Started  time.Time `json:"started"`
	Host     Host      `json:"host"`
	Method   string    `json:"method"`
	Series   []Series  `json:"series"`
	Summary  []Summary `json:"summary"`
	Duration float64   `json:"duration_s"`
}

// Host describes the machine the figures came from.
type Host struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Kamailio string `json:"kamailio"`
	Sipp     string `json:"sipp"`
	Commit   string `json:"commit"`
}

// Series is one server's ladder in one round of one test.
type Series struct {
	Test   string  `json:"test"`   // register_open, register_auth, call
	Server string  `json:"server"` // paysip, kamailio
	Round  int     `json:"round"`
	Points []Point `json:"points"`
	// BestClean is the highest offered rate of a clean step (0: none).
	BestClean float64 `json:"best_clean_per_s"`
	// BestLossless is the highest rate achieved in a step where every
	// call succeeded without a retransmission, whatever sipp managed to
	// offer: on a busy machine sipp itself falls short of the offered
	// rate, for both servers alike.
	BestLossless float64 `json:"best_lossless_per_s"`
}

// Point is one step of a ladder.
type Point struct {
	Offered  float64 `json:"offered_per_s"`
	Achieved float64 `json:"achieved_per_s"` // successful calls / elapsed
	Calls    int     `json:"calls"`
	Success  int     `json:"success"`
	Failed   int     `json:"failed"`
	Retrans  int     `json:"retransmissions"`
	Clean    bool    `json:"clean"`
	Lossless bool    `json:"lossless"` // every call succeeded, no retransmission
	CPUSec   float64 `json:"server_cpu_s"`
	// CPUPerCall is the server's CPU time per successful call (a REGISTER,
	// a REGISTER pair with digest, or a whole call), microseconds.
	CPUPerCall float64 `json:"server_cpu_us_per_call"`
}

// Summary compares the servers on one test.
type Summary struct {
	Test         string    `json:"test"`
	PaysipBest   float64   `json:"paysip_best_clean_per_s"`
	KamailioBest float64   `json:"kamailio_best_clean_per_s"`
	Ratio        float64   `json:"ratio"`        // paysip / kamailio, best against best
	RoundRatios  []float64 `json:"round_ratios"` // paysip / kamailio, each round
	// The same on the best lossless achieved rates (Series.BestLossless).
	PaysipLossless   float64   `json:"paysip_best_lossless_per_s"`
	KamailioLossless float64   `json:"kamailio_best_lossless_per_s"`
	LosslessRatio    float64   `json:"lossless_ratio"`
	LosslessRounds   []float64 `json:"lossless_round_ratios"`
	BaseLossless     float64   `json:"paysip_base_best_lossless_per_s,omitempty"`
	// For calls: CPU per call at the CPU rate, each round, and the ratio
	// paysip / kamailio (lower is better; the target is <= 2/3).
	CPURate     float64   `json:"cpu_rate_per_s,omitempty"`
	PaysipCPU   []float64 `json:"paysip_cpu_us_per_call,omitempty"`
	KamailioCPU []float64 `json:"kamailio_cpu_us_per_call,omitempty"`
	CPURatio    float64   `json:"cpu_ratio,omitempty"` // median paysip / median kamailio
	// Each round's paysip / kamailio at the CPU rate (the servers of a
	// round ran minutes apart: the spread says how noisy the machine was).
	CPURoundRatios []float64 `json:"cpu_round_ratios,omitempty"`
	BaseCPURatio   float64   `json:"paysip_base_cpu_ratio,omitempty"` // median paysip_base / median kamailio
	PaysipFailed   int       `json:"paysip_failed_calls"`
	KamailioFailed int       `json:"kamailio_failed_calls"`
	// With -base: the earlier paysip's figures, for before/after.
	BaseBest   float64   `json:"paysip_base_best_clean_per_s,omitempty"`
	BaseRatio  float64   `json:"paysip_base_ratio,omitempty"` // paysip_base / kamailio, best against best
	BaseCPU    []float64 `json:"paysip_base_cpu_us_per_call,omitempty"`
	BaseFailed int       `json:"paysip_base_failed_calls,omitempty"`
	// CPU per call (REGISTER, registration, call) at every rate both
	// servers ran clean, medians: less sensitive to a busy machine than
	// the clean rate.
	PaysipCPUMedian   float64 `json:"paysip_cpu_us_median"`
	KamailioCPUMedian float64 `json:"kamailio_cpu_us_median"`
	BaseCPUMedian     float64 `json:"paysip_base_cpu_us_median,omitempty"`
}

type config struct {
	rounds              int
	dur                 time.Duration
	tests               []string
	regRates, authRates []float64
	callRates           []float64
	cpuRate             float64
	out                 string
	plot                string // the bench helper's plot input (PlotRuns)
	paysip              string
	base                string // an earlier paysip, run alongside ("paysip_base")
	serverCore          string
	sippCore            string
	users               int
	keep                bool
	profile             string // directory for paysip's CPU profiles
}

func main() {
	var c config
	var tests, regRates, authRates, callRates string
	flag.IntVar(&c.rounds, "rounds", 2, "rounds (servers alternate within each)")
	flag.DurationVar(&c.dur, "dur", 4*time.Second, "time at each offered rate")
	flag.StringVar(&tests, "tests", "register_open,register_auth,call", "tests to run")
	flag.StringVar(&regRates, "reg-rates", "4000,8000,10000,12000,14000,16000,18000,20000,24000", "offered REGISTER/s ladder (open)")
	flag.StringVar(&authRates, "auth-rates", "2000,4000,6000,8000,10000,12000", "offered registrations/s ladder (digest)")
	flag.StringVar(&callRates, "call-rates", "500,1000,1500,2000,2500", "offered calls/s ladder")
	flag.Float64Var(&c.cpuRate, "cpu-rate", 1000, "call rate at which CPU per call is compared")
	flag.StringVar(&c.out, "out", "perf-sip.json", "JSON output (Result)")
	flag.StringVar(&c.plot, "plot", "", "also write the points as internal/plot's SIPRuns JSON (go run ./internal/plot/plotbench -sip FILE)")
	flag.StringVar(&c.paysip, "paysip", "", "paysip binary (default: built from ./cmd/paysip)")
	flag.StringVar(&c.base, "base", "", "an earlier paysip binary to run alongside, as server paysip_base (before/after)")
	flag.StringVar(&c.serverCore, "server-core", "0", "CPU the server is pinned to")
	flag.StringVar(&c.sippCore, "sipp-core", "1", "CPU sipp is pinned to")
	flag.IntVar(&c.users, "users", 50, "accounts in the digest test")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	flag.StringVar(&c.profile, "profile", "", "write a CPU profile of each paysip server run (serve --cpu-profile; not of -base) to this directory, as TEST-paysip-rROUND.pprof")
	flag.Parse()
	c.tests = strings.Split(tests, ",")
	for _, p := range []struct {
		s   string
		dst *[]float64
	}{{regRates, &c.regRates}, {authRates, &c.authRates}, {callRates, &c.callRates}} {
		for _, f := range strings.Split(p.s, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				fatal("rate %q: %v", f, err)
			}
			*p.dst = append(*p.dst, v)
		}
	}
	for _, tool := range []struct{ name, pkg string }{{"sipp", "sip-tester"}, {"kamailio", "kamailio"}, {"taskset", "util-linux"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			msg := fmt.Sprintf("%s not installed (apt-get install %s)", tool.name, tool.pkg)
			if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
				fatal("%s, and PAYSIP_REQUIRE_INTEROP=1", msg)
			}
			fmt.Println("SKIP:", msg)
			return
		}
	}
	if runtime.NumCPU() < 2 {
		fmt.Println("SKIP: needs two CPUs (one for the server, one for sipp)")
		return
	}
	r, err := newRunner(c)
	if err != nil {
		fatal("%v", err)
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := r.run(ctx)
	r.cleanup()
	if err != nil {
		fatal("%v", err)
	}
	b, _ := json.MarshalIndent(res, "", " ")
	if err := os.WriteFile(c.out, append(b, '\n'), 0o644); err != nil {
		fatal("%v", err)
	}
	fmt.Printf("wrote %s\n", c.out)
	if c.plot != "" {
		b, _ := json.MarshalIndent(plotRuns(res), "", " ")
		if err := os.WriteFile(c.plot, append(b, '\n'), 0o644); err != nil {
			fatal("%v", err)
		}
		fmt.Printf("wrote %s\n", c.plot)
	}
}

// PlotPoint is one point of internal/plot's SIPRuns (docs/performance.md).
type PlotPoint struct {
	Server   string  `json:"server"`
	Round    int     `json:"round"`
	Offered  float64 `json:"offered_per_s"`
	Achieved float64 `json:"achieved_per_s"`
	CPU      float64 `json:"cpu_us_per_op"`
	Failed   int     `json:"failed"`
}

// plotRuns renders the paysip and Kamailio points as internal/plot's
// SIPRuns: {"register": [...], "register_auth": [...], "proxy": [...]}.
func plotRuns(res *Result) map[string][]PlotPoint {
	names := map[string]string{"register_open": "register", "register_auth": "register_auth", "call": "proxy"}
	out := map[string][]PlotPoint{}
	for _, s := range res.Series {
		if s.Server == "paysip_base" {
			continue
		}
		for _, p := range s.Points {
			out[names[s.Test]] = append(out[names[s.Test]], PlotPoint{Server: s.Server, Round: s.Round, Offered: p.Offered,
				Achieved: round1(p.Achieved), CPU: round1(p.CPUPerCall), Failed: p.Failed})
		}
	}
	return out
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "perf: "+f+"\n", a...)
	os.Exit(1)
}

func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

type runner struct {
	cfg     config
	dir     string // work directory
	here    string // interop/perf (scenarios, templates)
	modPath string
	authDir string // paysip data directory with the accounts
	// baseAuthDir: the same accounts, made by the -base binary (a newer
	// paysip's schema is refused by an older one).
	baseAuthDir string
	kamDBDir    string // Kamailio's db_text tables
	usersFile   string
}

func newRunner(c config) (*runner, error) {
	here, err := findHere()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "paysip-perf-")
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: c, dir: dir, here: here, modPath: kamailioModules()}
	if c.profile != "" {
		if err := os.MkdirAll(c.profile, 0o755); err != nil {
			return nil, err
		}
	}
	if r.cfg.paysip == "" {
		r.cfg.paysip = filepath.Join(dir, "paysip")
		fmt.Println("building paysip ...")
		cmd := exec.Command("go", "build", "-o", r.cfg.paysip, "./cmd/paysip")
		cmd.Dir = filepath.Join(here, "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	return r, r.prepareUsers()
}

func (r *runner) cleanup() {
	if !r.cfg.keep {
		os.RemoveAll(r.dir)
	} else {
		fmt.Println("work directory kept:", r.dir)
	}
}

// findHere locates interop/perf from the working directory (the module
// root or interop/perf itself).
func findHere() (string, error) {
	for _, p := range []string{"interop/perf", ".", "perf"} {
		if _, err := os.Stat(filepath.Join(p, "uac.xml")); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", errors.New("run from the module root (go run ./interop/perf)")
}

func kamailioModules() string {
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"} {
		if _, err := os.Stat(filepath.Join(p, "tm.so")); err == nil {
			return p
		}
	}
	return "/usr/lib/x86_64-linux-gnu/kamailio/modules"
}

func userName(i int) string { return fmt.Sprintf("perf%03d", i) }
func password(i int) string { return fmt.Sprintf("pw-%03d-secret", i) }

// prepareUsers makes the digest test's accounts on both sides: paysip
// accounts in a data directory, Kamailio's db_text subscriber table
// (stored HA1), and sipp's injection file.
func (r *runner) prepareUsers() error {
	if !slices.Contains(r.cfg.tests, "register_auth") {
		return nil
	}
	r.authDir = filepath.Join(r.dir, "paysip-auth")
	r.kamDBDir = filepath.Join(r.dir, "kamdb")
	r.usersFile = filepath.Join(r.dir, "users.csv")
	os.MkdirAll(r.kamDBDir, 0o755)
	var csv, sub bytes.Buffer
	csv.WriteString("SEQUENTIAL\n")
	sub.WriteString("id(int,auto) username(string) domain(string) password(string,null) ha1(string) ha1b(string,null)\n")
	fmt.Printf("adding %d accounts ...\n", r.cfg.users)
	r.baseAuthDir = filepath.Join(r.dir, "paysip-base-auth")
	for i := 1; i <= r.cfg.users; i++ {
		for bin, dir := range map[string]string{r.cfg.paysip: r.authDir, r.cfg.base: r.baseAuthDir} {
			if bin == "" {
				continue
			}
			cmd := exec.Command(bin, "user", "add", userName(i), "--domain", domain, "--datadir", dir)
			cmd.Env = append(os.Environ(), "PAYSIP_USER_PASSWORD="+password(i))
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s user add: %v %s", bin, err, out)
			}
		}
		fmt.Fprintf(&csv, "%s;[authentication username=%s password=%s]\n", userName(i), userName(i), password(i))
		fmt.Fprintf(&sub, "%d:%s:%s::%s:\n", i, userName(i), domain, md5hex(userName(i)+":"+domain+":"+password(i)))
	}
	if err := os.WriteFile(r.usersFile, csv.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.kamDBDir, "subscriber"), sub.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.kamDBDir, "version"), []byte("table_name(string) table_version(int)\nsubscriber:7\n"), 0o644)
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	res := &Result{Started: time.Now().UTC(), Host: r.host(), Method: method(r.cfg)}
	start := time.Now()
	for round := 1; round <= r.cfg.rounds; round++ {
		servers := []string{"paysip", "kamailio"}
		if r.cfg.base != "" {
			servers = append(servers, "paysip_base")
		}
		if round%2 == 0 {
			slices.Reverse(servers)
		}
		for _, test := range r.cfg.tests {
			for _, srv := range servers {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				fmt.Printf("== round %d, %s, %s\n", round, test, srv)
				s, err := r.ladder(ctx, test, srv, round)
				if err != nil {
					return nil, fmt.Errorf("%s on %s, round %d: %w", test, srv, round, err)
				}
				res.Series = append(res.Series, s)
			}
		}
	}
	res.Duration = time.Since(start).Seconds()
	res.Summary = summarize(r.cfg, res.Series)
	printSummary(r.cfg, res.Summary)
	return res, nil
}

func method(c config) string {
	return fmt.Sprintf("sipp over loopback UDP; server pinned to CPU %s, sipp (caller and callee) to CPU %s; servers alternate, %d rounds; "+
		"each offered rate for %s; clean = every call succeeded, no retransmission, achieved >= 95%% of offered; "+
		"server CPU from /proc utime+stime (paysip: its process; Kamailio: its process group); "+
		"paysip serve with --limit-exempt 127.0.0.1 --max-transactions 1000000 (sipp is one source far above the per-source limits) "+
		"and --max-bindings 10000000 (the open REGISTER ladder binds more users than the default bound of 100,000)",
		c.serverCore, c.sippCore, c.rounds, c.dur)
}

// ladder runs one test against one server: start it, climb the rates,
// stop it.
func (r *runner) ladder(ctx context.Context, test, server string, round int) (Series, error) {
	s := Series{Test: test, Server: server, Round: round}
	port := freePort()
	var p *proc
	var err error
	switch server {
	case "paysip":
		p, err = r.startPaysip(ctx, r.cfg.paysip, test, port, r.profilePath(test, server, round))
	case "paysip_base":
		p, err = r.startPaysip(ctx, r.cfg.base, test, port, "") // an earlier paysip may not have --cpu-profile
	default:
		p, err = r.startKamailio(ctx, test, port)
	}
	if err != nil {
		return s, err
	}
	defer p.stop()
	target := fmt.Sprintf("127.0.0.1:%d", port)
	rates := r.cfg.regRates
	switch test {
	case "register_auth":
		rates = r.cfg.authRates
	case "call":
		rates = r.cfg.callRates
	}
	var callee int
	if test == "call" {
		callee = freePort()
		if _, err := r.sipp(ctx, "register_callee.xml", target, callee, 1, 10, "-s", "bob"); err != nil {
			return s, fmt.Errorf("registering the callee: %w", err)
		}
	}
	unclean := 0
	for _, rate := range rates {
		pt, err := r.step(ctx, test, target, callee, rate, p)
		if err != nil {
			return s, err
		}
		s.Points = append(s.Points, pt)
		fmt.Printf("   offered %6.0f/s achieved %8.1f/s  ok %6d/%-6d failed %4d retrans %4d  cpu %6.1f us/call  %s\n",
			pt.Offered, pt.Achieved, pt.Success, pt.Calls, pt.Failed, pt.Retrans, pt.CPUPerCall, map[bool]string{true: "clean", false: map[bool]string{true: "lossless, sipp short of the rate", false: "LOST OR RETRANSMITTED"}[pt.Lossless]}[pt.Clean])
		if pt.Clean {
			s.BestClean = max(s.BestClean, pt.Offered)
		}
		if pt.Lossless {
			s.BestLossless = max(s.BestLossless, pt.Achieved)
			unclean = 0
		} else if unclean++; unclean >= 2 && rate > r.cfg.cpuRate {
			break
		}
		time.Sleep(time.Second) // let the retransmissions of the last step drain
	}
	return s, nil
}

// step offers one rate for the configured time.
func (r *runner) step(ctx context.Context, test, target string, callee int, rate float64, p *proc) (Point, error) {
	n := int(rate * r.cfg.dur.Seconds())
	pt := Point{Offered: rate, Calls: n}
	var uas *sippProc
	if test == "call" {
		var err error
		if uas, err = r.startSipp(ctx, "uas.xml", target, callee, n, 0, "-s", "bob"); err != nil {
			return pt, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	cpu0 := p.cpu()
	var st sippStats
	var err error
	switch test {
	case "register_open":
		st, err = r.sipp(ctx, "register_open.xml", target, freePort(), n, rate)
	case "register_auth":
		st, err = r.sipp(ctx, "register_auth.xml", target, freePort(), n, rate, "-inf", r.usersFile)
	case "call":
		st, err = r.sipp(ctx, "uac.xml", target, freePort(), n, rate, "-s", "bob")
	}
	cpu1 := p.cpu()
	if errors.Is(err, context.Canceled) {
		return pt, err
	}
	tail := 0.0
	if uas != nil {
		ust := uas.wait(5 * time.Second)
		st.retrans += ust.retrans
		tail = 0.1 // the caller's pause before BYE
	}
	pt.Success, pt.Failed, pt.Retrans = st.success, st.failed, st.retrans
	if el := st.elapsed - tail; el > 0 {
		pt.Achieved = float64(st.success) / max(el, r.cfg.dur.Seconds())
		if st.elapsed < r.cfg.dur.Seconds()*0.9 {
			pt.Achieved = 0 // sipp stopped early (an error it reported)
		}
	}
	pt.CPUSec = cpu1 - cpu0
	if st.success > 0 {
		pt.CPUPerCall = pt.CPUSec / float64(st.success) * 1e6
	}
	pt.Lossless = st.success == n && st.failed == 0 && st.retrans == 0
	pt.Clean = pt.Lossless && pt.Achieved >= 0.95*rate
	return pt, nil
}

type sippStats struct {
	success, failed, retrans int
	elapsed                  float64
}

type sippProc struct {
	cmd   *exec.Cmd
	stats string
	done  chan error
}

// startSipp starts sipp pinned to the sipp core; rate 0 is a callee.
func (r *runner) startSipp(ctx context.Context, scenario, target string, port, calls int, rate float64, extra ...string) (*sippProc, error) {
	stats := filepath.Join(r.dir, fmt.Sprintf("stat-%d-%d.csv", port, time.Now().UnixNano()))
	args := []string{"-c", r.cfg.sippCore, "sipp", "-sf", filepath.Join(r.here, scenario), "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "u1", "-m", strconv.Itoa(calls), "-nostdin", "-trace_stat", "-stf", stats, "-fd", "1",
		"-recv_timeout", "8000", "-timeout", strconv.Itoa(int(r.cfg.dur.Seconds())+40) + "s", "-max_socket", "1000",
		"-buff_size", "8388608", "-nd", "-trace_err", "-error_file", stats + ".err"}
	if rate > 0 {
		args = append(args, "-r", strconv.FormatFloat(rate, 'f', 0, 64), "-l", "15000")
	}
	args = append(args, extra...)
	args = append(args, target)
	cmd := exec.CommandContext(ctx, "taskset", args...)
	cmd.Dir = r.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sp := &sippProc{cmd: cmd, stats: stats, done: make(chan error, 1)}
	go func() { sp.done <- cmd.Wait() }()
	return sp, nil
}

// wait waits for sipp to end (killing it after d) and reads its last
// cumulative statistics.
func (sp *sippProc) wait(d time.Duration) sippStats {
	select {
	case <-sp.done:
	case <-time.After(d):
		syscall.Kill(-sp.cmd.Process.Pid, syscall.SIGKILL)
		<-sp.done
	}
	return readStats(sp.stats)
}

// sipp runs a caller scenario to its end.
func (r *runner) sipp(ctx context.Context, scenario, target string, port, calls int, rate float64, extra ...string) (sippStats, error) {
	sp, err := r.startSipp(ctx, scenario, target, port, calls, rate, extra...)
	if err != nil {
		return sippStats{}, err
	}
	limit := time.Duration(float64(calls)/max(rate, 1)*float64(time.Second)) + 60*time.Second
	st := sp.wait(limit)
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	if calls == 1 && st.success != 1 {
		return st, fmt.Errorf("sipp %s: no success", scenario)
	}
	return st, nil
}

// readStats reads the cumulative counters of sipp's last statistics line.
func readStats(path string) sippStats {
	var st sippStats
	b, err := os.ReadFile(path)
	if err != nil {
		return st
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return st
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	get := func(name string) string {
		if i := slices.Index(head, name); i >= 0 && i < len(last) {
			return last[i]
		}
		return ""
	}
	num := func(name string) int { n, _ := strconv.Atoi(strings.TrimSpace(get(name))); return n }
	epoch := func(name string) float64 {
		f := strings.Fields(get(name))
		if len(f) == 0 {
			return 0
		}
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return v
	}
	st.success, st.failed, st.retrans = num("SuccessfulCall(C)"), num("FailedCall(C)"), num("Retransmissions(C)")
	st.elapsed = epoch("CurrentTime") - epoch("StartTime")
	return st
}

// proc is a server under test.
type proc struct {
	cmd   *exec.Cmd
	pgrp  bool // count every process of its group (Kamailio's workers)
	log   *bytes.Buffer
	ended chan struct{}
}

func (p *proc) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.ended:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.ended
	}
}

// cpu is the CPU time (user + system) the server has used, seconds.
func (p *proc) cpu() float64 {
	pid := p.cmd.Process.Pid
	if !p.pgrp {
		return procCPU(pid)
	}
	ents, _ := os.ReadDir("/proc")
	total := 0.0
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgid, _ := syscall.Getpgid(n); pgid == pid {
			total += procCPU(n)
		}
	}
	return total
}

// procCPU is utime+stime of a process (all its threads), seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ (sysconf(_SC_CLK_TCK)), 100 on Linux.
const clockTicks = 100

// profilePath is where a paysip server run writes its CPU profile ("":
// none).
func (r *runner) profilePath(test, server string, round int) string {
	if r.cfg.profile == "" {
		return ""
	}
	p, _ := filepath.Abs(filepath.Join(r.cfg.profile, fmt.Sprintf("%s-%s-r%d.pprof", test, server, round)))
	return p
}

func (r *runner) startPaysip(ctx context.Context, bin, test string, port int, profile string) (*proc, error) {
	data := filepath.Join(r.dir, fmt.Sprintf("paysip-%d", port))
	args := []string{"-c", r.cfg.serverCore, bin, "serve", "--domain", domain, "--sip-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--http-addr", "127.0.0.1:0", "--limit-exempt", "127.0.0.1", "--max-transactions", "1000000", "--block-interval", "0"}
	if serveHas(bin, "--max-bindings") {
		// register_open binds a new user per REGISTER: a ladder binds
		// hundreds of thousands, over the registrar's default bound
		// (100,000, a protection with its own tests), past which paysip
		// answers 503. Kamailio's usrloc has no such bound.
		args = append(args, "--max-bindings", "10000000")
	}
	if test == "register_auth" {
		// Each binary its own copy of the accounts: a newer paysip
		// migrates the database to a schema an older one refuses.
		args = append(args, "--datadir", r.authDir)
		if bin == r.cfg.base && bin != r.cfg.paysip {
			args[len(args)-1] = r.baseAuthDir
		}
	} else {
		args = append(args, "--open", "--datadir", data)
	}
	if profile != "" {
		args = append(args, "--cpu-profile", profile)
	}
	return r.startProc(ctx, args, false, port)
}

func (r *runner) startKamailio(ctx context.Context, test string, port int) (*proc, error) {
	name := "kamailio-registrar.cfg.tmpl"
	if test == "call" {
		name = "kamailio-proxy.cfg.tmpl"
	}
	t, err := template.ParseFiles(filepath.Join(r.here, name))
	if err != nil {
		return nil, err
	}
	var cfg bytes.Buffer
	if err := t.Execute(&cfg, map[string]any{"Port": port, "ModPath": r.modPath, "Auth": test == "register_auth", "DBDir": r.kamDBDir}); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.dir, fmt.Sprintf("kamailio-%d", port))
	os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, cfg.Bytes(), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-c", r.cfg.serverCore, "kamailio", "-f", path, "-DD", "-E", "-m", "512", "-M", "64", "-Y", dir, "-w", dir, "-P", filepath.Join(dir, "k.pid")}
	return r.startProc(ctx, args, true, port)
}

func (r *runner) startProc(ctx context.Context, args []string, pgrp bool, port int) (*proc, error) {
	cmd := exec.Command("taskset", args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, pgrp: pgrp, log: &logs, ended: make(chan struct{})}
	go func() { cmd.Wait(); close(p.ended) }()
	if err := waitSIP(ctx, port, p.ended, 90*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not answer: %v\n%s", args[2], err, tail(logs.String(), 3000))
	}
	return p, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitSIP waits until something answers an OPTIONS on the UDP port.
func waitSIP(ctx context.Context, port int, ended chan struct{}, d time.Duration) error {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	lport := conn.LocalAddr().(*net.UDPAddr).Port
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		select {
		case <-ended:
			return errors.New("exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%d;rport\r\nFrom: <sip:probe@%s>;tag=p1\r\nTo: <sip:%s>\r\n"+
			"Call-ID: probe-%d@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", domain, lport, time.Now().UnixNano(), domain, domain, time.Now().UnixNano())
		conn.WriteTo([]byte(msg), dst)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := conn.ReadFrom(buf); err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 ")) {
			return nil
		}
	}
	return errors.New("timeout")
}

func freePort() int {
	for {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		// TCP too: paysip binds both.
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p
		}
	}
}

func summarize(c config, series []Series) []Summary {
	var out []Summary
	for _, test := range c.tests {
		sm := Summary{Test: test}
		byRound := map[int][2]float64{}
		cpuAll := map[string][]float64{}
		lossRound := map[int][2]float64{}
		for _, s := range series {
			if s.Test != test {
				continue
			}
			br, lr := byRound[s.Round], lossRound[s.Round]
			failed := 0
			for _, p := range s.Points {
				failed += p.Failed
			}
			var all []float64
			for _, p := range s.Points {
				if p.Success > 0 && p.Failed == 0 {
					all = append(all, p.CPUPerCall)
				}
			}
			cpuAll[s.Server] = append(cpuAll[s.Server], all...)
			if s.Server == "paysip_base" {
				sm.BaseBest = max(sm.BaseBest, s.BestClean)
				sm.BaseLossless = max(sm.BaseLossless, s.BestLossless)
				sm.BaseFailed += failed
				for _, p := range s.Points {
					if test == "call" && p.Offered == c.cpuRate && p.Success > 0 {
						sm.BaseCPU = append(sm.BaseCPU, round1(p.CPUPerCall))
					}
				}
				continue
			}
			if s.Server == "paysip" {
				sm.PaysipBest = max(sm.PaysipBest, s.BestClean)
				sm.PaysipLossless = max(sm.PaysipLossless, s.BestLossless)
				br[0], lr[0] = s.BestClean, s.BestLossless
				sm.PaysipFailed += failed
			} else {
				sm.KamailioBest = max(sm.KamailioBest, s.BestClean)
				sm.KamailioLossless = max(sm.KamailioLossless, s.BestLossless)
				br[1], lr[1] = s.BestClean, s.BestLossless
				sm.KamailioFailed += failed
			}
			byRound[s.Round], lossRound[s.Round] = br, lr
			if test == "call" {
				sm.CPURate = c.cpuRate
				for _, p := range s.Points {
					if p.Offered == c.cpuRate && p.Success > 0 {
						if s.Server == "paysip" {
							sm.PaysipCPU = append(sm.PaysipCPU, round1(p.CPUPerCall))
						} else {
							sm.KamailioCPU = append(sm.KamailioCPU, round1(p.CPUPerCall))
						}
					}
				}
			}
		}
		for round := 1; round <= c.rounds; round++ {
			if br, ok := byRound[round]; ok && br[1] > 0 {
				sm.RoundRatios = append(sm.RoundRatios, round2(br[0]/br[1]))
			}
			if lr, ok := lossRound[round]; ok && lr[1] > 0 {
				sm.LosslessRounds = append(sm.LosslessRounds, round2(lr[0]/lr[1]))
			}
		}
		if sm.KamailioBest > 0 {
			sm.Ratio = round2(sm.PaysipBest / sm.KamailioBest)
			sm.BaseRatio = round2(sm.BaseBest / sm.KamailioBest)
		}
		if sm.KamailioLossless > 0 {
			sm.LosslessRatio = round2(sm.PaysipLossless / sm.KamailioLossless)
		}
		sm.PaysipCPUMedian = round1(median(cpuAll["paysip"]))
		sm.KamailioCPUMedian = round1(median(cpuAll["kamailio"]))
		if len(cpuAll["paysip_base"]) > 0 {
			sm.BaseCPUMedian = round1(median(cpuAll["paysip_base"]))
		}
		if len(sm.PaysipCPU) > 0 && len(sm.KamailioCPU) > 0 {
			sm.CPURatio = round2(median(sm.PaysipCPU) / median(sm.KamailioCPU))
			if len(sm.BaseCPU) > 0 {
				sm.BaseCPURatio = round2(median(sm.BaseCPU) / median(sm.KamailioCPU))
			}
			if len(sm.PaysipCPU) == len(sm.KamailioCPU) {
				for i := range sm.PaysipCPU { // one point per round each
					sm.CPURoundRatios = append(sm.CPURoundRatios, round2(sm.PaysipCPU[i]/sm.KamailioCPU[i]))
				}
			}
		}
		out = append(out, sm)
	}
	return out
}

func printSummary(c config, sums []Summary) {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintln(w, "\n== summary (clean = all answered, no retransmission, >= 95% of offered)")
	for _, s := range sums {
		fmt.Fprintf(w, "%-14s paysip best %6.0f/s  kamailio best %6.0f/s  ratio %.2f  (per round %v)\n",
			s.Test, s.PaysipBest, s.KamailioBest, s.Ratio, s.RoundRatios)
		fmt.Fprintf(w, "%-14s lossless: paysip best %6.0f/s  kamailio best %6.0f/s  ratio %.2f  (per round %v)\n",
			"", s.PaysipLossless, s.KamailioLossless, s.LosslessRatio, s.LosslessRounds)
		fmt.Fprintf(w, "%-14s cpu per call, median over the rates without failures: paysip %.1f us, kamailio %.1f us (ratio %.2f)\n",
			"", s.PaysipCPUMedian, s.KamailioCPUMedian, s.PaysipCPUMedian/s.KamailioCPUMedian)
		if s.BaseCPUMedian > 0 {
			fmt.Fprintf(w, "%-14s before (-base): best %6.0f/s, lossless %6.0f/s, ratio %.2f, cpu per call %.1f us, cpu at %.0f/s %v, failed %d\n",
				"", s.BaseBest, s.BaseLossless, s.BaseRatio, s.BaseCPUMedian, c.cpuRate, s.BaseCPU, s.BaseFailed)
		}
		if s.Test == "call" {
			fmt.Fprintf(w, "%-14s cpu/call at %.0f/s: paysip %v us, kamailio %v us, ratio of medians %.2f (target <= 0.67); failed calls: paysip %d, kamailio %d\n",
				"", s.CPURate, s.PaysipCPU, s.KamailioCPU, s.CPURatio, s.PaysipFailed, s.KamailioFailed)
			fmt.Fprintf(w, "%-14s cpu ratio per round %v (min %.2f, max %.2f)", "", s.CPURoundRatios, slices.Min(append([]float64{math.Inf(1)}, s.CPURoundRatios...)),
				slices.Max(append([]float64{math.Inf(-1)}, s.CPURoundRatios...)))
			if s.BaseCPURatio > 0 {
				fmt.Fprintf(w, "; before (-base): ratio of medians %.2f", s.BaseCPURatio)
			}
			fmt.Fprintln(w)
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round2(v float64) float64 { return math.Round(v*100) / 100 }

func (r *runner) host() Host {
	h := Host{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("kamailio", "-v").Output(); err == nil {
		h.Kamailio = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	if out, err := exec.Command("sipp", "-v").CombinedOutput(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "SIPp v") {
				h.Sipp = strings.TrimSpace(l)
			}
		}
	}
	if out, err := exec.Command("git", "-C", r.here, "rev-parse", "--short", "HEAD").Output(); err == nil {
		h.Commit = strings.TrimSpace(string(out))
	}
	return h
}

// serveHas reports whether bin's serve command knows flag (an earlier
// binary, -base, may not).
func serveHas(bin, flag string) bool {
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	return strings.Contains(string(out), flag)
}
