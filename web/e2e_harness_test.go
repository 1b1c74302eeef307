package web_test

// The end-to-end harness: a real regtest btcd (internal/regtest), the
// paysip binary as a user runs it (serve, payee, call), and Debian's
// Chromium driven by Playwright (web/e2e/driver.mjs) with fake media
// devices. The tests in e2e_test.go tell the stories with its verbs.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/internal/regtest"
)

const domain = "paysip.test"

// chromiumArgs are the flags Debian's Chromium needs here, as root on a
// machine with a closed network (no background connections to Google's
// hosts), plus a fake microphone granted without a prompt, autoplay, and
// loopback ICE candidates (Chromium leaves loopback out by default: with
// no other interface it would gather nothing).
var chromiumArgs = []string{
	"--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
	"--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
}

// need skips the test naming what is missing, or fails it under
// PAYSIP_REQUIRE_INTEROP=1 (CI installs everything).
func need(t *testing.T, what, install string) {
	t.Helper()
	if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s is required (PAYSIP_REQUIRE_INTEROP=1) but missing: %s", what, install)
	}
	t.Skipf("%s missing (%s)", what, install)
}

// requireBrowser finds Chromium, node and playwright-core.
func requireBrowser(t *testing.T) (chromium, node string) {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		need(t, "chromium", "apt-get install chromium")
	}
	if node, err = exec.LookPath("node"); err != nil {
		need(t, "node", "apt-get install nodejs")
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "playwright-core", "package.json")); err != nil {
		need(t, "playwright-core", "npm ci --prefix web/e2e")
	}
	return chromium, node
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// paysipBin builds cmd/paysip once for the package's tests.
func paysipBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "paysip-e2e-bin-*")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "paysip")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/paysip").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/paysip: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// world is one test's universe: a node, a server, a browser.
type world struct {
	t         *testing.T
	net       *regtest.Env
	bin       string
	sipAddr   string // the server's SIP address (TCP), for Go agents
	baseURL   string // the server's HTTP origin: the app and /sip
	serveDir  string
	artifacts string
	browser   *browser
	pages     []*page
}

// newWorld starts a regtest node mining a block every 2 s, `paysip serve`
// on it with accounts alice, bob, carol, tutor (password NAME-password), and a
// Chromium.
func newWorld(t *testing.T) *world {
	t.Helper()
	chromium, node := requireBrowser(t)
	w := &world{t: t, bin: paysipBin(t), serveDir: t.TempDir()}
	w.artifacts = filepath.Join("e2e", "artifacts", t.Name())
	os.RemoveAll(w.artifacts)
	if err := os.MkdirAll(w.artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	w.net = regtest.New(t)
	stop := w.net.Node.MineEvery(2 * time.Second)
	t.Cleanup(stop)
	for _, u := range []string{"alice", "bob", "carol", "tutor"} {
		w.paysipOK(w.serveDir, []string{"PAYSIP_USER_PASSWORD=" + u + "-password"}, "user", "add", u, "--domain", domain)
	}
	w.sipAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	serve := w.start("serve", w.serveDir, nil, "serve", "--domain", domain, "--sip-addr", w.sipAddr, "--http-addr", "127.0.0.1:0")
	line := serve.waitLine(t, regexp.MustCompile(`ws http://127\.0\.0\.1:(\d+)/sip`), 60*time.Second)
	w.baseURL = "http://127.0.0.1:" + line[1]
	w.checkApp()
	w.browser = startBrowser(t, node, chromium, w.baseURL)
	t.Cleanup(w.finish)
	return w
}

// checkApp fails with what is missing when the server does not serve the
// web app at "/" (the web branch's web.go and its route in serve.go).
func (w *world) checkApp() {
	w.t.Helper()
	resp, err := http.Get(w.baseURL + "/")
	if err != nil {
		w.t.Fatalf("GET %s/: %v", w.baseURL, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		w.t.Fatalf("MISSING (web branch): `paysip serve` does not serve the web app at / (GET / = %d %q): web/web.go's handler and its route in cmd/paysip/serve.go",
			resp.StatusCode, truncate(string(body), 200))
	}
}

// finish saves a screenshot and the console of every page when the test
// failed, and checks what every page asked the network for.
func (w *world) finish() {
	for _, p := range w.pages {
		if w.t.Failed() {
			p.b.call("screenshot", map[string]any{"page": p.name, "path": p.artifact("at-failure")})
			var logs []string
			if raw, err := p.b.call("logs", map[string]any{"page": p.name}); err == nil {
				json.Unmarshal(raw, &logs)
			}
			w.t.Logf("console of page %s (last 60 lines):\n%s", p.name, strings.Join(tail(logs, 60), "\n"))
		}
		p.checkRequests()
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nodeArgs point a paysip command at the test's node and a data directory.
func (w *world) nodeArgs(dir string) []string {
	n := w.net.Node
	return []string{"--datadir", dir, "--network", "regtest", "--btcd-rpc", n.RPCAddr, "--btcd-user", n.RPCUser, "--btcd-pass", n.RPCPass}
}

// paysipOK runs a paysip command to its end and returns its stdout.
func (w *world) paysipOK(dir string, env []string, args ...string) string {
	w.t.Helper()
	cmd := exec.Command(w.bin, append(args, w.nodeArgs(dir)...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("paysip %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// proc is a long-running paysip command; its stdout is read line by line.
type proc struct {
	name   string
	dir    string // its data directory
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	stderr strings.Builder
	more   chan struct{} // closed and replaced at each new line
	exited chan struct{}
}

// start runs paysip args... on the test's node until the test ends (then
// SIGINT, and SIGKILL 10 s later).
func (w *world) start(name, dir string, env []string, args ...string) *proc {
	w.t.Helper()
	cmd := exec.Command(w.bin, append(args, w.nodeArgs(dir)...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, dir: dir, cmd: cmd, more: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = &syncWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		cmd.Wait()
		close(p.exited)
	}()
	w.t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		if w.t.Failed() {
			p.mu.Lock()
			w.t.Logf("paysip %s: stdout:\n%s\nstderr (last 40 lines):\n%s", name, strings.Join(p.lines, "\n"),
				strings.Join(tail(strings.Split(p.stderr.String(), "\n"), 40), "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// waitLine waits for a line of stdout matching re and returns its groups.
func (p *proc) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for i := 0; ; {
		p.mu.Lock()
		for ; i < len(p.lines); i++ {
			if m := re.FindStringSubmatch(p.lines[i]); m != nil {
				p.mu.Unlock()
				return m
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.exited:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if i == n {
				t.Fatalf("paysip %s exited without printing %q:\n%s", p.name, re, p.stderrTail())
			}
		case <-deadline:
			t.Fatalf("paysip %s: no line %q after %v:\n%s", p.name, re, timeout, p.stderrTail())
		}
	}
}

func (p *proc) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(tail(strings.Split(p.stderr.String(), "\n"), 30), "\n")
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// goPayee starts `paysip payee --tone` for sip:NAME@domain at price.
func (w *world) goPayee(name string, price int64) *proc {
	w.t.Helper()
	p := w.start("payee "+name, w.t.TempDir(), nil, "payee", "--aor", "sip:"+name+"@"+domain, "--price", strconv.FormatInt(price, 10),
		"--name", name, "--tone", "--loopback", "--sip-server", w.sipAddr, "--sip-password", name+"-password")
	p.waitLine(w.t, regexp.MustCompile(`^payee .* ready`), 60*time.Second)
	return p
}

// payeeEnded waits for the Go payee's account of a call: what it was paid
// and its settlement.
func (w *world) payeeEnded(p *proc, timeout time.Duration) (paid int64, settlement string) {
	w.t.Helper()
	m := p.waitLine(w.t, regexp.MustCompile(`ended: paid (\d+) sat, settlement (\S+)`), timeout)
	paid, _ = strconv.ParseInt(m[1], 10, 64)
	return paid, m[2]
}

// goCall runs `paysip call` from sip:NAME@domain to `to` for seconds of
// call, closing the channel at the end, with a wallet funded with fund sat.
func (w *world) goCall(name, to string, seconds int, fund int64) *proc {
	w.t.Helper()
	dir := w.t.TempDir()
	addr := strings.TrimSpace(w.paysipOK(dir, nil, "wallet", "address"))
	a, err := btcutil.DecodeAddress(addr, &chaincfg.RegressionNetParams)
	if err != nil {
		w.t.Fatalf("payer address %q: %v", addr, err)
	}
	w.net.Fund(a, fund)
	return w.start("call "+name, dir, nil, "call", to, "--from", "sip:"+name+"@"+domain, "--sip-password", name+"-password",
		"--seconds", strconv.Itoa(seconds), "--close", "--loopback", "--sip-server", w.sipAddr)
}

// reCallPaid is `paysip call`'s last line after a closed channel.
var reCallPaid = regexp.MustCompile(`call paid (\d+) sat; channel closed, settlement (\S+)`)

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// settledPaid reads a settlement from the node: the pool (the funding
// output it spends) less the payer's change (output 0, when there are two
// outputs), i.e. what the payer paid the payee, fee included. It waits
// for the transaction to reach the node.
func (w *world) settledPaid(txid string) int64 {
	w.t.Helper()
	h, err := chainhash.NewHashFromStr(txid)
	if err != nil {
		w.t.Fatalf("settlement txid %q: %v", txid, err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tx, err := w.net.Chain.Tx(ctx, *h)
		if err == nil {
			in := tx.TxIn[0].PreviousOutPoint
			funding, err := w.net.Chain.Tx(ctx, in.Hash)
			if err != nil {
				w.t.Fatalf("funding %s of settlement %s: %v", in.Hash, txid, err)
			}
			pool := funding.TxOut[in.Index].Value
			if len(tx.TxOut) > 1 {
				return pool - tx.TxOut[0].Value
			}
			return pool
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("settlement %s never reached the node: %v", txid, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// browser is the Playwright driver (node web/e2e/driver.mjs) and its
// Chromium.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      sync.Mutex
	next    int
	waiting map[int]chan driverAnswer
	stderr  strings.Builder
	dead    chan struct{}
}

type driverAnswer struct {
	ID     int             `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

func startBrowser(t *testing.T, node, chromium, baseURL string) *browser {
	t.Helper()
	args, _ := json.Marshal(chromiumArgs)
	cmd := exec.Command(node, filepath.Join("e2e", "driver.mjs"))
	cmd.Env = append(os.Environ(), "PAYSIP_CHROMIUM="+chromium, "PAYSIP_BASE_URL="+baseURL, "PAYSIP_CHROMIUM_ARGS="+string(args))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b := &browser{t: t, cmd: cmd, waiting: map[int]chan driverAnswer{}, dead: make(chan struct{})}
	cmd.Stderr = &syncWriter{mu: &b.mu, w: &b.stderr}
	var err error
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan driverAnswer, 1)
	b.waiting[0] = ready
	b.next = 1
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var a driverAnswer
			if json.Unmarshal(sc.Bytes(), &a) != nil {
				continue
			}
			b.mu.Lock()
			ch := b.waiting[a.ID]
			delete(b.waiting, a.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- a
			}
		}
		cmd.Wait()
		close(b.dead)
	}()
	t.Cleanup(func() {
		b.stdin.Close() // the driver closes the browser and exits
		select {
		case <-b.dead:
		case <-time.After(10 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything left of Chromium
		<-b.dead
	})
	select {
	case a := <-ready:
		t.Logf("Chromium %s (playwright-core)", strings.Trim(string(a.Result), "{}"))
	case <-b.dead:
		t.Fatalf("the Playwright driver did not start:\n%s", b.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the Playwright driver did not start in 60 s:\n%s", b.stderr.String())
	}
	return b
}

// call sends one request to the driver and waits for its answer.
func (b *browser) call(op string, args map[string]any) (json.RawMessage, error) {
	req := map[string]any{"op": op}
	for k, v := range args {
		req[k] = v
	}
	ch := make(chan driverAnswer, 1)
	b.mu.Lock()
	id := b.next
	b.next++
	b.waiting[id] = ch
	req["id"] = id
	line, _ := json.Marshal(req)
	_, err := b.stdin.Write(append(line, '\n'))
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	select {
	case a := <-ch:
		if !a.OK {
			return nil, errors.New(a.Error)
		}
		return a.Result, nil
	case <-b.dead:
		b.mu.Lock()
		defer b.mu.Unlock()
		return nil, fmt.Errorf("the Playwright driver died:\n%s", b.stderr.String())
	}
}

// page is one person's browser tab, in a context of its own (its own
// IndexedDB, so its own wallet).
type page struct {
	w    *world
	b    *browser
	name string
}

// openPage opens a new context and page named name at the app's root.
func (w *world) openPage(name string) *page {
	w.t.Helper()
	p := &page{w: w, b: w.browser, name: name}
	p.do("open", nil)
	w.pages = append(w.pages, p)
	return p
}

// do runs an operation on the page; a failure ends the test.
func (p *page) do(op string, args map[string]any) json.RawMessage {
	p.w.t.Helper()
	if args == nil {
		args = map[string]any{}
	}
	args["page"] = p.name
	res, err := p.b.call(op, args)
	if err != nil {
		p.w.t.Fatalf("page %s: %s %v: %v", p.name, op, args, err)
	}
	return res
}

// tid is the selector of a data-testid hook.
func tid(id string) string { return `[data-testid="` + id + `"]` }

func (p *page) load(path string) { p.w.t.Helper(); p.do("goto", map[string]any{"path": path}) }
func (p *page) reload()          { p.w.t.Helper(); p.do("reload", nil) }
func (p *page) click(id string)  { p.w.t.Helper(); p.do("click", map[string]any{"sel": tid(id)}) }
func (p *page) fill(id string, value any) {
	p.w.t.Helper()
	p.do("fill", map[string]any{"sel": tid(id), "value": value})
}
func (p *page) clickSel(sel string)     { p.w.t.Helper(); p.do("click", map[string]any{"sel": sel}) }
func (p *page) visible(sel string) bool { p.w.t.Helper(); return len(p.query(sel)) > 0 }
func (p *page) artifact(name string) string {
	return filepath.Join(p.w.artifacts, p.name+"-"+name+".png")
}

// waitFor waits until sel is visible.
func (p *page) waitFor(sel string, timeout time.Duration) {
	p.w.t.Helper()
	p.do("wait", map[string]any{"sel": sel, "timeout": timeout.Milliseconds()})
}

// until waits until the JavaScript expression (over the page, with arg)
// is true; what names what the test waited for.
func (p *page) until(what, expr string, arg any, timeout time.Duration) {
	p.w.t.Helper()
	if _, err := p.b.call("until", map[string]any{"page": p.name, "expr": expr, "arg": arg, "timeout": timeout.Milliseconds()}); err != nil {
		if panics := p.consoleLines("panic:"); len(panics) > 0 {
			p.w.t.Fatalf("BROKEN (wasm branch: web/wasm): page %s: waiting for %s, the WebAssembly program had panicked: %s", p.name, what, panics[0])
		}
		p.w.t.Fatalf("page %s: %s: not within %v (%v)", p.name, what, timeout, err)
	}
}

// try is until without ending the test: the error says why it waited in
// vain.
func (p *page) try(expr string, arg any, timeout time.Duration) error {
	_, err := p.b.call("until", map[string]any{"page": p.name, "expr": expr, "arg": arg, "timeout": timeout.Milliseconds()})
	return err
}

// consoleLines returns the page's console lines containing s.
func (p *page) consoleLines(s string) []string {
	var logs, out []string
	if raw, err := p.b.call("logs", map[string]any{"page": p.name}); err == nil {
		json.Unmarshal(raw, &logs)
	}
	for _, l := range logs {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// element is what the tests read of an element: its data-* attributes
// (camelCase, as dataset), text and value.
type element struct {
	Data  map[string]string `json:"data"`
	Text  string            `json:"text"`
	Value *string           `json:"value"`
}

func (e element) int(key string) int64 {
	v, err := strconv.ParseInt(e.Data[key], 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// query returns every element matching sel.
func (p *page) query(sel string) []element {
	p.w.t.Helper()
	var els []element
	if err := json.Unmarshal(p.do("query", map[string]any{"sel": sel}), &els); err != nil {
		p.w.t.Fatal(err)
	}
	return els
}

// one returns the first element matching sel, failing the test if none.
func (p *page) one(sel string) element {
	p.w.t.Helper()
	els := p.query(sel)
	if len(els) == 0 {
		p.w.t.Fatalf("page %s: no element %s", p.name, sel)
	}
	return els[0]
}

// screenshot saves the page as an artifact (web/e2e/artifacts/TEST/).
func (p *page) screenshot(name string) {
	p.w.t.Helper()
	p.do("screenshot", map[string]any{"path": p.artifact(name)})
}

// pageRequest is one request a page made (Playwright's request event, or
// a WebSocket it opened).
type pageRequest struct{ URL, Method, Type string }

// foreignRequests returns the requests other than the app's own files
// from base (the server's origin) and the WebSocket at base's /sip
// (Contract B: the chain only through SIP). data: and blob: URLs never
// leave the browser.
func foreignRequests(base string, reqs []pageRequest) []string {
	b, _ := url.Parse(base)
	var bad []string
	for _, r := range reqs {
		u, err := url.Parse(r.URL)
		switch {
		case err != nil:
		case u.Scheme == "data" || u.Scheme == "blob":
			continue
		case (u.Scheme == "http" || u.Scheme == "https") && u.Host == b.Host && r.Type != "websocket":
			continue
		case (u.Scheme == "ws" || u.Scheme == "wss") && u.Host == b.Host && u.Path == "/sip" && r.Type == "websocket":
			continue
		}
		bad = append(bad, r.Method+" "+r.URL+" ("+r.Type+")")
	}
	return bad
}

// checkRequests fails the test if the page asked the network for anything
// but the app's own files and its WebSocket.
func (p *page) checkRequests() {
	raw, err := p.b.call("requests", map[string]any{"page": p.name})
	if err != nil {
		p.w.t.Errorf("page %s: requests: %v", p.name, err)
		return
	}
	var reqs []pageRequest
	json.Unmarshal(raw, &reqs)
	for _, r := range foreignRequests(p.w.baseURL, reqs) {
		p.w.t.Errorf("page %s made a request other than the app's own files and the WebSocket: %s", p.name, r)
	}
}

// requests returns the page's requests so far.
func (p *page) requests() []string {
	p.w.t.Helper()
	var reqs []pageRequest
	json.Unmarshal(p.do("requests", nil), &reqs)
	var out []string
	for _, r := range reqs {
		out = append(out, r.Type+" "+r.Method+" "+r.URL)
	}
	return out
}

// TestForeignRequests: the request check tells the app's own traffic from
// anything else (it runs without a browser).
func TestForeignRequests(t *testing.T) {
	base := "http://127.0.0.1:8080"
	own := []pageRequest{
		{"http://127.0.0.1:8080/", "GET", "document"}, {"http://127.0.0.1:8080/app.js?v=1", "GET", "script"},
		{"http://127.0.0.1:8080/paysip.wasm", "GET", "fetch"}, {"ws://127.0.0.1:8080/sip", "GET", "websocket"},
		{"data:,", "GET", "other"}, {"blob:http://127.0.0.1:8080/x", "GET", "media"},
	}
	if bad := foreignRequests(base, own); len(bad) != 0 {
		t.Fatalf("the app's own traffic refused: %v", bad)
	}
	for _, r := range []pageRequest{
		{"https://fonts.googleapis.com/css", "GET", "stylesheet"}, {"http://127.0.0.1:18332/", "POST", "fetch"},
		{"http://localhost:8080/app.js", "GET", "script"}, {"ws://127.0.0.1:8080/other", "GET", "websocket"},
		{"wss://sip.example.org/sip", "GET", "websocket"}, {"http://127.0.0.1:8080/sip", "GET", "websocket"},
		{"ftp://127.0.0.1:8080/x", "GET", "other"},
	} {
		if bad := foreignRequests(base, []pageRequest{r}); len(bad) != 1 {
			t.Errorf("%+v passed the check", r)
		}
	}
}
