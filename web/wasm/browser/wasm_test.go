//go:build !(js && wasm)

package browser_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/internal/regtest"
)

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

// requireTool finds a program, or skips (fails under
// PAYSIP_REQUIRE_INTEROP=1) with the reason.
func requireTool(t testing.TB, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s is required (PAYSIP_REQUIRE_INTEROP=1) but not installed: %s", name, how)
	}
	t.Skipf("%s not installed (%s)", name, how)
	return ""
}

// goEnv is `go env NAME`.
func goEnv(t testing.TB, name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// buildWasm builds web/wasm as the web build does.
func buildWasm(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "paysip.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "../")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js GOARCH=wasm go build ./web/wasm: %v\n%s", err, b)
	}
	return out
}

// TestWasmSameVectors runs the tests of the core packages (the channel
// protocol's transaction vectors, the wire codec, satoshi arithmetic,
// transaction building, the browser's channel store and the chain
// client) compiled to WebAssembly under Node with Go's wasm exec wrapper:
// the browser's build passes what the native build passes.
func TestWasmSameVectors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the core tests as WebAssembly: skipped with -short")
	}
	requireTool(t, "node", "apt-get install nodejs")
	exec := filepath.Join(goEnv(t, "GOROOT"), "lib", "wasm", "go_js_wasm_exec")
	cmd := execCommand("go", "test", "-count=1", "-exec", exec,
		"../../../channel", "../../../paywire", "../../../sat", "../../../txbuild", "../../../chainapi", "../kvstore")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("core tests under WebAssembly: %v", err)
	}
	for _, pkg := range []string{"channel", "paywire", "sat", "txbuild", "chainapi", "web/wasm/kvstore"} {
		if !strings.Contains(string(out), "ok  \tgithub.com/paysip/paysip/"+pkg+"\t") {
			t.Errorf("no ok line for %s", pkg)
		}
	}
}

var execCommand = exec.Command

// TestWasmSize reports the size of the page's WebAssembly, raw and
// gzipped (the web build serves it compressed), and checks that no SIP
// stack, WebRTC or SQLite is in it.
func TestWasmSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the wasm: skipped with -short")
	}
	path := buildWasm(t)
	raw, gz := sizes(t, path)
	t.Logf("paysip.wasm: %d bytes raw, %d bytes gzipped (-9)", raw, gz)
	cmd := exec.Command("go", "list", "-deps", "../")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	deps, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{"github.com/pion/", "modernc.org/sqlite", "github.com/jackc/pgx", "github.com/emiago/sipgo\n", "github.com/btcsuite/btcd/mempool", "github.com/prometheus/", "google.golang.org/protobuf"} {
		if strings.Contains(string(deps), banned) {
			t.Errorf("the wasm imports %s", strings.TrimSpace(banned))
		}
	}
	if strings.Contains(string(deps), "github.com/emiago/sipgo/sip") {
		t.Logf("note: sipgo/sip is in the wasm (store -> sipauth), ~0.9 MB raw")
	}
}

// TestWasmJSAPI loads paysip.wasm in Node twice (a payer page and a payee
// page, each with its IndexedDB: fake-indexeddb) and runs
// nodetest/api_test.mjs against a real regtest node behind the SIP API:
// wallet, faucet, a paid call over a conn pair, each payment stored
// before its ack, the settlement, a reload. The settlement is then
// checked on chain to the satoshi.
func TestWasmJSAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a regtest node and Node: skipped with -short")
	}
	node := requireTool(t, "node", "apt-get install nodejs")
	nodetest, _ := filepath.Abs("../nodetest")
	if _, err := os.Stat(filepath.Join(nodetest, "node_modules", "fake-indexeddb")); err != nil {
		if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
			t.Fatalf("fake-indexeddb missing (PAYSIP_REQUIRE_INTEROP=1): npm ci --prefix web/wasm/nodetest")
		}
		t.Skip("fake-indexeddb not installed: npm ci --prefix web/wasm/nodetest")
	}
	wasm := buildWasm(t)
	env := regtest.New(t)
	url := chainBridge(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// As under the page's CSP (no 'unsafe-eval'): evaluating a string
	// throws.
	cmd := exec.CommandContext(ctx, node, "--disallow-code-generation-from-strings", filepath.Join(nodetest, "api_test.mjs"))
	cmd.Dir = nodetest
	cmd.Env = append(os.Environ(), "WASM="+wasm, "WASM_EXEC="+filepath.Join(goEnv(t, "GOROOT"), "lib", "wasm", "wasm_exec.js"), "CHAIN_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node api_test.mjs: %v\n%s", err, out)
	}
	var res struct {
		ChannelID, SettlementTxid string
		CapacitySat, PaidSat      int64
		Payments                  int
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	found := false
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			found = json.Unmarshal([]byte(line), &res) == nil
		}
	}
	if !found {
		t.Fatalf("no RESULT line:\n%s", out)
	}
	t.Logf("browser pages: channel %s, %d payments, %d of %d sat paid, settlement %s", res.ChannelID, res.Payments, res.PaidSat, res.CapacitySat, res.SettlementTxid)
	// On chain: the settlement spends the pool, pays the payer back the
	// capacity less what the page showed as paid, to the satoshi.
	h, err := chainhash.NewHashFromStr(res.SettlementTxid)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := env.Chain.Tx(ctx, *h)
	if err != nil {
		t.Fatalf("settlement %s not on the node: %v", res.SettlementTxid, err)
	}
	if len(tx.TxIn) != 1 || tx.TxIn[0].PreviousOutPoint.String() != res.ChannelID {
		t.Fatalf("settlement does not spend the channel %s", res.ChannelID)
	}
	back := false
	for _, o := range tx.TxOut {
		back = back || o.Value == res.CapacitySat-res.PaidSat
	}
	if !back || res.PaidSat <= 0 {
		t.Fatalf("settlement outputs %v: none returns %d - %d to the payer", tx.TxOut, res.CapacitySat, res.PaidSat)
	}
	env.Mine(1)
	if st, err := env.Chain.TxStatus(ctx, *h); err != nil || st.Confirmations < 1 {
		t.Fatalf("settlement not mined: %+v %v", st, err)
	}
}

// chainBridge serves POST bodies as SIP API requests: a sipserver (with a
// faucet) on the test's node, asked by an anonymous user agent (From at
// anonymous.invalid), as a page's SIP.js would. Node has no SIP stack;
// the page has no HTTP path to the chain (Contract B): this bridge exists
// in this test only.
func chainBridge(t *testing.T, env *regtest.Env) string {
	t.Helper()
	rt := sipAPI(t, env)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		res, err := rt(rctx, body)
		if err != nil {
			http.Error(w, fmt.Sprint("no answer: ", err), http.StatusBadGateway)
			return
		}
		w.Write(res)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return "http://" + l.Addr().String() + "/chain"
}

type faucet struct{ env *regtest.Env }

func (f faucet) Pay(ctx context.Context, script []byte, amount int64) (string, error) {
	addr, err := f.env.Faucet.Address(script)
	if err != nil {
		return "", err
	}
	tx, err := f.env.Faucet.Send(ctx, addr, amount, regtest.FeeRate)
	if err != nil {
		return "", err
	}
	f.env.Mine(1)
	return tx.TxHash().String(), nil
}

// sizes returns a file's size and its gzip -9 size.
func sizes(t testing.TB, path string) (int64, int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := exec.Command("sh", "-c", "gzip -9 -c '"+path+"' | wc -c").Output()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	fmt.Sscan(strings.TrimSpace(string(gz)), &n)
	return st.Size(), n
}
