// Package web is paysip's web app, embedded: the page (built from src/
// with esbuild by build.mjs), the WebAssembly build of the wallet and the
// paid call (./wasm, Contract A), and Go's wasm_exec.js, all in dist/,
// generated and committed so that building and testing the Go code needs
// no npm. Handler serves them on `paysip serve`'s HTTP server at "/",
// precompressed (brotli or gzip, as the client accepts), with ETags, and
// with the server's settings (domain, network, WebSocket path, STUN/TURN)
// written into index.html: the page learns them without a request.
//
// Regenerate dist/ after changing src/, package.json or ./wasm (or the
// Go packages it builds):
//
//	go generate ./web
package web

//go:generate npm ci --no-audit --no-fund
//go:generate node build.mjs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed dist
var dist embed.FS

// Dist is the built app: index.html, app.js, app.css, wasm_exec.js and
// paysip.wasm, each beside its .gz and .br (the wasm only compressed).
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed pattern guarantees dist
	}
	return sub
}

// ICEServer is a STUN or TURN server for the page's RTCPeerConnection
// (the RTCIceServer dictionary of the WebRTC specification).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Config is what the page needs from the server, written into index.html
// (element #paysip-config, application/json).
type Config struct {
	Domain  string `json:"domain"`  // the SIP domain: addresses sip:NAME@Domain
	Network string `json:"network"` // regtest, testnet3, mainnet...: the wallet's and the faucet's
	// WebSocketPath is where SIP over WebSocket is served (RFC 7118) on
	// the page's own host: "/sip".
	WebSocketPath string      `json:"wsPath"`
	ICEServers    []ICEServer `json:"iceServers,omitempty"`
}

// asset is one file as served: its bytes in each encoding it has.
type asset struct {
	typ            string
	identity, gz   []byte // identity may be nil (compressed-only files)
	br             []byte
	etag           string
	immutableQuery bool // named by content (app.js?v=HASH): cached for good
}

// Handler serves the app.
type Handler struct {
	assets map[string]*asset
}

// configMarker is the element of src/index.html the config goes into.
const configMarker = `<script id="paysip-config" type="application/json">{}</script>`

// NewHandler makes the handler serving dist with cfg written into
// index.html.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.WebSocketPath == "" {
		cfg.WebSocketPath = "/sip"
	}
	h := &Handler{assets: map[string]*asset{}}
	d := Dist()
	names, err := fs.Glob(d, "*")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(n, ".gz"), ".br")
		if h.assets[base] != nil {
			continue
		}
		a := &asset{typ: contentType(base)}
		a.identity, _ = fs.ReadFile(d, base)
		a.gz, _ = fs.ReadFile(d, base+".gz")
		a.br, _ = fs.ReadFile(d, base+".br")
		if a.identity == nil && a.gz == nil {
			continue
		}
		h.assets[base] = a
	}
	idx := h.assets["index.html"]
	if idx == nil || idx.identity == nil {
		return nil, errors.New("web: dist has no index.html (run go generate ./web)")
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	// JSON inside <script>: "<" escaped by encoding/json already (\u003c),
	// so no "</script>" can end the element early.
	page := bytes.Replace(idx.identity, []byte(configMarker),
		[]byte(`<script id="paysip-config" type="application/json">`+string(js)+`</script>`), 1)
	if bytes.Equal(page, idx.identity) {
		return nil, errors.New("web: index.html has no config element")
	}
	idx.identity, idx.gz, idx.br = page, gzipBytes(page), nil
	for n, a := range h.assets {
		sum := sha256.New()
		for _, b := range [][]byte{a.identity, a.gz, a.br} {
			sum.Write(b)
		}
		a.etag = `"` + hex.EncodeToString(sum.Sum(nil))[:20] + `"`
		a.immutableQuery = n == "app.js" || n == "app.css"
	}
	return h, nil
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".wasm":
		return "application/wasm" // WebAssembly.instantiateStreaming requires it
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// contentSecurityPolicy keeps the page to its own files and its own
// WebSocket (Contract B): no script, style, image or connection elsewhere.
// 'wasm-unsafe-eval' lets it compile its WebAssembly.
const contentSecurityPolicy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; " +
	"img-src 'self' data:; media-src 'self' blob: mediastream:; style-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'none'; frame-ancestors 'none'"

// ServeHTTP serves GET and HEAD of the app's files; "/" is index.html.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "GET or HEAD only", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	a := h.assets[name]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.typ)
	hd.Set("Vary", "Accept-Encoding")
	hd.Set("ETag", a.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	switch {
	case name == "index.html":
		hd.Set("Cache-Control", "no-cache")
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		// The microphone for calls, nothing else.
		hd.Set("Permissions-Policy", "microphone=(self), camera=(), geolocation=()")
	case a.immutableQuery && r.URL.Query().Get("v") != "":
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	default:
		hd.Set("Cache-Control", "no-cache") // revalidated by ETag
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body, enc := a.identity, ""
	switch {
	case a.br != nil && accepts(r, "br"):
		body, enc = a.br, "br"
	case a.gz != nil && accepts(r, "gzip"):
		body, enc = a.gz, "gzip"
	case body == nil:
		// Compressed-only (the wasm) to a client taking neither encoding.
		zr, err := gzip.NewReader(bytes.NewReader(a.gz))
		if err != nil {
			http.Error(w, "corrupt asset", http.StatusInternalServerError)
			return
		}
		hd.Del("ETag")
		if r.Method == http.MethodHead {
			return
		}
		io.Copy(w, zr)
		return
	}
	if enc != "" {
		hd.Set("Content-Encoding", enc)
	}
	hd.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// etagMatches reads an If-None-Match list (RFC 9110 section 13.1.2: weak
// comparison).
func etagMatches(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// accepts reports whether the request's Accept-Encoding takes coding with
// a non-zero quality (RFC 9110 section 12.5.3).
func accepts(r *http.Request, coding string) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(h, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), coding) {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return !(q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000")
		}
	}
	return false
}
