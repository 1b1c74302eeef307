package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) []byte {
	t.Helper()
	var r io.Reader = res.Body
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandler: the page carries the server's settings (escaped: a domain
// cannot end the script element), each file its type, the encoding the
// client takes, ETags, the cache rules and the page's security headers.
func TestHandler(t *testing.T) {
	cfg := Config{Domain: `evil</script><script>alert(1)</script>.test`, Network: "regtest",
		ICEServers: []ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}, {URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u", Credential: "p"}}}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := get(t, h, "/", nil)
	page := body(t, res)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("index: %d %v", res.StatusCode, res.Header)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "'wasm-unsafe-eval'") {
		t.Fatalf("CSP %q", csp)
	}
	raw, _ := fs.ReadFile(Dist(), "index.html")
	if bytes.Count(page, []byte("</script>")) != bytes.Count(raw, []byte("</script>")) {
		t.Fatalf("the config ended a script element:\n%s", page)
	}
	m := regexp.MustCompile(`<script id="paysip-config" type="application/json">(.*?)</script>`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no config in the page:\n%s", page)
	}
	var got Config
	if err := json.Unmarshal(m[1], &got); err != nil {
		t.Fatal(err)
	}
	if got.Domain != cfg.Domain || got.Network != "regtest" || got.WebSocketPath != "/sip" || len(got.ICEServers) != 2 || got.ICEServers[1].Credential != "p" {
		t.Fatalf("config %+v", got)
	}
	// gzip when asked; the same page.
	res = get(t, h, "/index.html", map[string]string{"Accept-Encoding": "gzip, deflate"})
	if res.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body(t, res), page) {
		t.Fatalf("gzip index: %v", res.Header)
	}
	// The bundle: brotli preferred, gzip, identity; q=0 refuses.
	for _, c := range []struct{ accept, enc string }{{"gzip, br", "br"}, {"br;q=0, gzip", "gzip"}, {"", ""}, {"identity", ""}} {
		res = get(t, h, "/app.js?v=1", map[string]string{"Accept-Encoding": c.accept})
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != c.enc || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" ||
			!strings.Contains(res.Header.Get("Cache-Control"), "immutable") || res.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("app.js with %q: %d %v", c.accept, res.StatusCode, res.Header)
		}
	}
	plain := body(t, get(t, h, "/app.js", nil))
	if gz := body(t, get(t, h, "/app.js", map[string]string{"Accept-Encoding": "gzip"})); !bytes.Equal(gz, plain) || len(plain) == 0 {
		t.Fatal("app.js: gzip and identity differ")
	}
	// ETag: 304.
	res = get(t, h, "/app.css", nil)
	etag := res.Header.Get("ETag")
	if etag == "" || res.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Fatalf("app.css %v", res.Header)
	}
	if res = get(t, h, "/app.css", map[string]string{"If-None-Match": `"x", ` + etag}); res.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", res.StatusCode)
	}
	// The wasm, when built: application/wasm (instantiateStreaming needs
	// it), compressed, and plain for a client taking no encoding.
	if _, err := fs.Stat(Dist(), "paysip.wasm.gz"); err == nil {
		res = get(t, h, "/paysip.wasm", map[string]string{"Accept-Encoding": "gzip"})
		w := body(t, res)
		if res.Header.Get("Content-Type") != "application/wasm" || !bytes.HasPrefix(w, []byte("\x00asm")) {
			t.Fatalf("wasm %v", res.Header)
		}
		res = get(t, h, "/paysip.wasm", nil)
		if res.Header.Get("Content-Encoding") != "" || !bytes.Equal(body(t, res), w) {
			t.Fatal("wasm without an encoding differs")
		}
	}
	// Nothing else; GET and HEAD only.
	for _, p := range []string{"/nope.js", "/../web.go", "/dist/index.html", "/.gitignore"} {
		if res := get(t, h, p, nil); res.StatusCode != 404 {
			t.Fatalf("%s: %d", p, res.StatusCode)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/app.js", nil))
	if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != strconv.Itoa(len(plain)) {
		t.Fatalf("HEAD: %d %d %v", rec.Code, rec.Body.Len(), rec.Header())
	}
}

// requireNode finds node and the build's npm packages (npm ci when they
// are missing), or skips (fails under PAYSIP_REQUIRE_INTEROP=1).
func requireNode(t *testing.T) {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s (PAYSIP_REQUIRE_INTEROP=1): apt-get install nodejs npm; npm ci --prefix web", why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("node"); err != nil {
		skip("node not installed: the bundle cannot be rebuilt")
	}
	if _, err := os.Stat("node_modules/esbuild"); err == nil {
		return
	}
	if _, err := exec.LookPath("npm"); err != nil {
		skip("npm not installed and web/node_modules missing")
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	if out, err := cmd.CombinedOutput(); err != nil {
		skip("npm ci failed: " + err.Error() + ": " + lastLines(out, 5))
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestBundleMatchesSources: the committed dist/ is what build.mjs makes
// of src/, package-lock.json's packages, ./wasm and Go's wasm_exec.js:
// rebuilt into a temporary directory, every file is the same (compressed
// files compared by content). A change without `go generate ./web` fails.
func TestBundleMatchesSources(t *testing.T) {
	if testing.Short() {
		t.Skip("rebuilds the bundle and the wasm (-short)")
	}
	requireNode(t)
	out := t.TempDir()
	args := []string{"build.mjs", "--out", out}
	cmd := exec.Command("node", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, b)
	} else {
		t.Logf("rebuilt:\n%s", b)
	}
	list := func(dir string) []string {
		var names []string
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return names
	}
	want, have := list(out), list("dist")
	if strings.Join(want, " ") != strings.Join(have, " ") {
		t.Fatalf("dist has %v, the sources make %v: run go generate ./web", have, want)
	}
	for _, n := range want {
		a, _ := os.ReadFile(filepath.Join("dist", n))
		b, _ := os.ReadFile(filepath.Join(out, n))
		if bytes.Equal(a, b) {
			continue
		}
		var same bool
		switch filepath.Ext(n) {
		case ".gz":
			same = bytes.Equal(gunzip(t, a), gunzip(t, b))
		case ".br":
			same = bytes.Equal(unbrotli(t, a), unbrotli(t, b))
		}
		if !same {
			t.Errorf("dist/%s differs from what its sources make: run go generate ./web", n)
		}
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unbrotli decompresses with node (the standard library has no brotli).
func unbrotli(t *testing.T, b []byte) []byte {
	cmd := exec.Command("node", "-e", `process.stdout.write(require("zlib").brotliDecompressSync(require("fs").readFileSync(0)))`)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
