package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/internal/pgtest"
	"github.com/paysip/paysip/internal/regtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	domain   = "paysip.test"
	price    = "60000" // sat/min: 1,000 sat per second of call
	password = "tutor-password"
)

// requireTool finds a program, or skips (fails under
// PAYSIP_REQUIRE_INTEROP=1) naming the Debian package that has it.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s is required (PAYSIP_REQUIRE_INTEROP=1) but not installed: apt-get install %s", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// paysip builds cmd/paysip once per test binary.
func paysip(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clustertest-*")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "paysip")
		if out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/paysip").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t testing.TB) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// Serve and Kamailio take UDP and TCP on one port.
		if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port
		}
	}
}

// syncBuffer is a process's output, read while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a program the test started; it is stopped (SIGINT, then
// SIGKILL) when the test ends, and its output logged if the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func start(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGINT)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out.String(), 12000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// stop signals the process group and waits (SIGKILL after 10 s).
func (p *proc) stop(sig syscall.Signal) {
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// kill is a crash: SIGKILL, nothing written on the way out.
func (p *proc) kill() { p.stop(syscall.SIGKILL) }

func (p *proc) waitFor(t testing.TB, s string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); !strings.Contains(p.out.String(), s); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing %q:\n%s", p.name, s, tail(p.out.String(), 8000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed %q:\n%s", p.name, s, tail(p.out.String(), 8000))
		}
	}
}

// world is a regtest node and the paysip flags that reach it.
type world struct {
	t    testing.TB
	bin  string
	env  *regtest.Env
	node []string // --btcd-rpc and credentials
}

func newWorld(t testing.TB) *world {
	w := &world{t: t, bin: paysip(t), env: regtest.New(t)}
	n := w.env.Node
	w.node = []string{"--btcd-rpc", n.RPCAddr, "--btcd-user", n.RPCUser, "--btcd-pass", n.RPCPass}
	return w
}

// run runs a paysip command to its end.
func (w *world) run(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, w.bin, append(args, w.node...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// addAccount creates the payee's SIP account in the store db.
func (w *world) addAccount(db, name string) {
	w.t.Helper()
	out, err := w.run(context.Background(), []string{"PAYSIP_USER_PASSWORD=" + password}, "user", "add", name, "--domain", domain, "--db", db,
		"--datadir", w.t.TempDir())
	if err != nil {
		w.t.Fatalf("user add: %v\n%s", err, out)
	}
}

// serveNode is one paysip serve process.
type serveNode struct {
	*proc
	sipPort, httpPort int
	db, dir           string
	args              []string
}

func (n *serveNode) sipAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.sipPort) }

// startServe starts a serve node on the store db (behind the edge at
// 127.0.0.1: its Path trusted, its address exempt from per-source limits).
func (w *world) startServe(name, db string, extra ...string) *serveNode {
	w.t.Helper()
	n := &serveNode{sipPort: freePort(w.t), httpPort: freePort(w.t), db: db, dir: w.t.TempDir()}
	n.args = append([]string{"serve", "--domain", domain, "--db", db, "--datadir", n.dir,
		"--sip-addr", n.sipAddr(), "--http-addr", fmt.Sprintf("127.0.0.1:%d", n.httpPort),
		"--trusted-edge", "127.0.0.1", "--limit-exempt", "127.0.0.1"}, w.node...)
	if len(extra) == 0 {
		extra = []string{"-v"} // registeredHere reads the debug log
	}
	n.args = append(n.args, extra...)
	n.proc = start(w.t, name, w.bin, n.args...)
	n.waitFor(w.t, "paysip serving", 60*time.Second)
	return n
}

// restart starts the node again on its store, ports and data directory.
func (w *world) restart(n *serveNode) {
	w.t.Helper()
	n.proc = start(w.t, n.name, w.bin, n.args...)
	n.waitFor(w.t, "paysip serving", 60*time.Second)
}

// registeredHere reports whether this node's registrar took a REGISTER
// for aor (its debug log).
func (n *serveNode) registeredHere(aor string) bool {
	return regexp.MustCompile(`msg=registered [^\n]*aor=` + regexp.QuoteMeta(aor) + ` bindings=[1-9]`).MatchString(n.out.String())
}

// directory is the node's directory (GET /api/directory), as JSON.
func (n *serveNode) directory(t testing.TB) string {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/directory", n.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var d struct {
		Entries []map[string]any `json:"entries"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("directory %s: %v", b, err)
	}
	out, _ := json.Marshal(d.Entries)
	return string(out)
}

// edge is Kamailio running deploy/kamailio/kamailio.cfg in front of nodes.
type edge struct {
	*proc
	port, wsPort int
}

func (e *edge) addr() string { return fmt.Sprintf("127.0.0.1:%d", e.port) }

// startEdge runs the repository's Kamailio configuration, unchanged, with a
// local file of listen addresses and a dispatcher list of the nodes.
func startEdge(t testing.TB, nodes ...*serveNode) *edge {
	t.Helper()
	bin := requireTool(t, "kamailio", "kamailio kamailio-websocket-modules")
	modPath := "/usr/lib/x86_64-linux-gnu/kamailio/modules"
	for _, m := range []string{"dispatcher.so", "websocket.so", "path.so"} {
		if _, err := os.Stat(filepath.Join(modPath, m)); err != nil {
			requireTool(t, "kamailio module "+m, "kamailio kamailio-websocket-modules")
		}
	}
	dir := t.TempDir()
	cfg, err := os.ReadFile("../../deploy/kamailio/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "kamailio.cfg"), cfg, 0o600)
	e := &edge{port: freePort(t), wsPort: freePort(t)}
	var list strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&list, "1 sip:%s;transport=tcp\n", n.sipAddr())
	}
	os.WriteFile(filepath.Join(dir, "dispatcher.list"), []byte(list.String()), 0o600)
	local := fmt.Sprintf("listen=udp:127.0.0.1:%d\nlisten=tcp:127.0.0.1:%d\nlisten=tcp:127.0.0.1:%d\n"+
		"#!define DISPATCHER_LIST \"%s\"\n#!define PING_INTERVAL 1\n#!define CHILDREN 2\n#!define MPATH \"%s/\"\n",
		e.port, e.port, e.wsPort, filepath.Join(dir, "dispatcher.list"), modPath)
	os.WriteFile(filepath.Join(dir, "kamailio-local.cfg"), []byte(local), 0o600)
	// -m/-M: shared and private memory (MB) enough for a load test.
	e.proc = startIn(t, "kamailio", dir, bin, "-f", "kamailio.cfg", "-DD", "-E", "-m", "256", "-M", "16",
		"-Y", dir, "-w", dir, "-P", filepath.Join(dir, "k.pid"))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", e.addr(), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio never listened on %s: %v\n%s", e.addr(), err, e.out.String())
		}
	}
	time.Sleep(200 * time.Millisecond) // its UDP port, bound at the same time
	return e
}

func startIn(t testing.TB, name, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out.String(), 12000))
		}
	})
	return p
}

// payee starts 'paysip payee' for sip:NAME@domain registering through
// server (host:port, TCP), with its own data directory and wallet name.
func (w *world) payee(label, name, server, dataDir string, extra ...string) *proc {
	w.t.Helper()
	args := append([]string{"payee", "--aor", "sip:" + name + "@" + domain, "--price", price, "--name", "Tutor", "--wallet", name,
		"--sip-server", server, "--sip-user", name, "--sip-password", password, "--tick", "100ms", "--loopback", "--datadir", dataDir}, extra...)
	p := start(w.t, label, w.bin, append(args, w.node...)...)
	p.waitFor(w.t, "ready at "+price+" sat/min", 60*time.Second)
	return p
}

// fundCaller makes the caller's wallet in dataDir and funds it.
func (w *world) fundCaller(dataDir string) {
	w.t.Helper()
	out, err := w.run(context.Background(), nil, "wallet", "--wallet", "caller", "--datadir", dataDir, "address")
	if err != nil {
		w.t.Fatalf("wallet address: %v\n%s", err, out)
	}
	addr, err := btcutil.DecodeAddress(strings.TrimSpace(lastLine(out)), &chaincfg.RegressionNetParams)
	if err != nil {
		w.t.Fatalf("address %q: %v", out, err)
	}
	w.env.Fund(addr, 3_000_000)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// callResult is what 'paysip call' printed.
type callResult struct {
	out        string
	paid       int64
	settlement string // txid when the call closed its channel
	channel    string // channel id (txid:vout) opened or resumed
}

var (
	paidRe    = regexp.MustCompile(`call paid (\d+) sat`)
	settledRe = regexp.MustCompile(`settlement ([0-9a-f]{64})`)
	openRe    = regexp.MustCompile(`channel ([0-9a-f]{64}:\d+) open`)
	resumeRe  = regexp.MustCompile(`resuming channel ([0-9a-f]{64}:\d+)`)
)

// call runs 'paysip call' to sip:NAME@domain through server.
func (w *world) call(dataDir, name, server string, extra ...string) (callResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"call", "sip:" + name + "@" + domain, "--wallet", "caller", "--datadir", dataDir, "--sip-server", server,
		"--tick", "100ms", "--loopback"}, extra...)
	out, err := w.run(ctx, nil, args...)
	r := callResult{out: out}
	if m := paidRe.FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &r.paid)
	}
	if m := settledRe.FindStringSubmatch(out); m != nil {
		r.settlement = m[1]
	}
	if m := openRe.FindStringSubmatch(out); m != nil {
		r.channel = m[1]
	} else if m := resumeRe.FindStringSubmatch(out); m != nil {
		r.channel = m[1]
	}
	return r, err
}

// confirmed mines a block and checks that txid is in it.
func (w *world) confirmed(txid string) {
	w.t.Helper()
	w.env.Mine(1)
	h, err := chainhash.NewHashFromStr(txid)
	if err != nil {
		w.t.Fatal(err)
	}
	st, err := w.env.Chain.TxStatus(context.Background(), *h)
	if err != nil || st.Confirmations < 1 {
		w.t.Fatalf("transaction %s not confirmed: %+v %v", txid, st, err)
	}
}

// pgURL is a new database on the throwaway PostgreSQL, for child
// processes (skips, or fails under PAYSIP_REQUIRE_INTEROP=1, without it).
func pgURL(t testing.TB) string {
	t.Helper()
	return pgtest.Shared(t).NewDatabase(t)
}
