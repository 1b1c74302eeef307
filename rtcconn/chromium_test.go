package rtcconn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

// chromiumFlags start Debian's Chromium headless as root on a machine
// whose network is closed (no background connections), with a fake
// microphone granted without a prompt.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--use-fake-device-for-media-stream",
	"--autoplay-policy=no-user-gesture-required",
}

// withLoopback makes Chromium gather loopback candidates too, which it
// leaves out by default: with no other interface it would gather none.
const withLoopback = "--allow-loopback-in-peer-connection"

// grantMicrophone answers Chromium's microphone prompt with yes. With it
// the page may enumerate host addresses; without it Chromium hides them
// behind mDNS .local names (RFC 8828 section 5.2, mode 2).
const grantMicrophone = "--use-fake-ui-for-media-stream"

// requireChromium finds Debian's Chromium, or skips (fails under
// PAYSIP_REQUIRE_INTEROP=1).
func requireChromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
		t.Fatal("chromium is required (PAYSIP_REQUIRE_INTEROP=1) but not installed: apt-get install chromium")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// browserReport is what the page posts at the end (or its error).
type browserReport struct {
	Error           string   `json:"error"`
	AudioPacketsIn  int      `json:"audioPacketsIn"`
	Codec           string   `json:"codec"`
	Messages        []string `json:"messages"`
	LocalCandidate  string   `json:"localCandidate"`
	RemoteCandidate string   `json:"remoteCandidate"`
}

// chromiumPage serves testdata/chromium.html and its signalling on
// loopback, and runs Chromium on it until the test ends.
type chromiumPage struct {
	offer    chan string // from the page (role=offer)
	answer   chan string // to the page (role=offer), from it (role=answer)
	goOffer  string      // to the page (role=answer)
	reports  chan browserReport
	chromium *exec.Cmd
}

// pageOpts place the page: its query, whether the microphone is granted,
// the Go side's offer (role=answer), where the test serves it (default
// 127.0.0.1) and what Chromium runs inside (ip netns exec NS: another host).
type pageOpts struct {
	query   string
	mic     bool
	goOffer []byte
	listen  string
	wrap    []string
	// noLoopback leaves Chromium as it comes: no loopback candidates.
	noLoopback bool
}

func startChromiumPage(t *testing.T, o pageOpts) *chromiumPage {
	t.Helper()
	query, mic, goOffer := o.query, o.mic, o.goOffer
	bin := requireChromium(t)
	page, err := os.ReadFile(filepath.Join("testdata", "chromium.html"))
	if err != nil {
		t.Fatal(err)
	}
	p := &chromiumPage{offer: make(chan string, 1), answer: make(chan string, 1), goOffer: string(goOffer), reports: make(chan browserReport, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.HandleFunc("GET /offer", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, p.goOffer) })
	mux.HandleFunc("POST /offer", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.offer <- string(b)
		select {
		case a := <-p.answer:
			io.WriteString(w, a)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("POST /answer", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.answer <- string(b)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep browserReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			rep.Error = "report: " + err.Error()
		}
		select {
		case p.reports <- rep:
		default:
		}
	})
	if o.listen == "" {
		o.listen = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.listen, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	args := append([]string{"--user-data-dir=" + t.TempDir()}, chromiumFlags...)
	if mic {
		args = append(args, grantMicrophone)
	}
	if !o.noLoopback {
		args = append(args, withLoopback)
	}
	if o.listen != "127.0.0.1" {
		// getUserMedia needs a secure context: loopback is one, another
		// host's plain HTTP is not.
		args = append(args, "--unsafely-treat-insecure-origin-as-secure=http://"+ln.Addr().String())
	}
	args = append(args, fmt.Sprintf("http://%s/?%s", ln.Addr(), query))
	argv := append(append(append([]string{}, o.wrap...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.chromium = cmd
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // Chromium and its helpers
		cmd.Wait()
		if t.Failed() {
			t.Logf("chromium output:\n%s", logs.String())
		}
	})
	return p
}

// waitOffer returns Chromium's offer, or fails with the page's error.
func (p *chromiumPage) waitOffer(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case offer := <-p.offer:
		return offer
	case rep := <-p.reports:
		t.Fatalf("page, before offering: %s", rep.Error)
	case <-ctx.Done():
		t.Fatal("no offer from Chromium")
	}
	return ""
}

func (p *chromiumPage) wait(t *testing.T, ctx context.Context) browserReport {
	t.Helper()
	select {
	case rep := <-p.reports:
		if rep.Error != "" {
			t.Fatalf("page: %s", rep.Error)
		}
		return rep
	case <-ctx.Done():
		t.Fatal("no report from the page")
	}
	return browserReport{}
}

// audioCodecs lists the m=audio payload types' codec names in the order
// offered (RFC 3264 section 5.1: preference order).
func audioCodecs(t *testing.T, raw string) (codecs []string, candidates []string) {
	t.Helper()
	var s sdp.SessionDescription
	if err := s.UnmarshalString(raw); err != nil {
		t.Fatalf("Chromium's SDP: %v\n%s", err, raw)
	}
	for _, m := range s.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key == "candidate" {
				candidates = append(candidates, a.Value)
			}
		}
		if m.MediaName.Media != "audio" {
			continue
		}
		for _, f := range m.MediaName.Formats {
			var pt uint8
			fmt.Sscan(f, &pt)
			c, err := s.GetCodecForPayloadType(pt)
			if err != nil {
				codecs = append(codecs, f)
				continue
			}
			codecs = append(codecs, strings.ToLower(c.Name))
		}
	}
	return codecs, candidates
}

// exchange checks what crossed: a message each way on the DataChannel, and
// audio both ways (from the page only when it has a microphone).
func exchange(t *testing.T, ctx context.Context, peer *Peer, p *chromiumPage, mic bool) browserReport {
	t.Helper()
	conn, err := peer.Conn(ctx)
	if err != nil {
		t.Fatalf("DataChannel with Chromium: %v", err)
	}
	m, err := conn.Recv(ctx)
	if err != nil || string(m) != "hello from chromium" {
		t.Fatalf("from Chromium: %q %v", m, err)
	}
	msg := []byte{0x00, 0x01, 0xfe, 0xff, 'g', 'o'} // binary, as paywire is
	if err := conn.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if m, err := conn.Recv(ctx); err != nil || string(m) != "echo:"+string(msg) {
		// The page decodes as UTF-8: invalid bytes come back as U+FFFD.
		if err != nil || !strings.HasPrefix(string(m), "echo:") || !strings.HasSuffix(string(m), "go") {
			t.Fatalf("echo from Chromium: %q %v", m, err)
		}
	}
	rep := p.wait(t, ctx)
	if rep.AudioPacketsIn < 25 || rep.Codec != "audio/PCMU" {
		t.Fatalf("Chromium received %d audio packets (%s) from the Go peer", rep.AudioPacketsIn, rep.Codec)
	}
	if mic {
		deadline := time.Now().Add(10 * time.Second)
		for peer.ReceivedPackets() < 25 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := peer.ReceivedPackets(); n < 25 {
			t.Fatalf("the Go peer received %d audio packets from Chromium's microphone", n)
		}
	}
	t.Logf("Chromium received %d %s packets; pair %s -> %s; Go received %d packets",
		rep.AudioPacketsIn, rep.Codec, rep.LocalCandidate, rep.RemoteCandidate, peer.ReceivedPackets())
	return rep
}

// TestChromiumOffers: Chromium's own offer (Opus first, then G.711; the
// DataChannel over SCTP; with mic=0 its host candidates hidden behind mDNS
// .local names) answered by the Go peer on loopback: the DataChannel opens,
// messages cross both ways, audio flows both ways in G.711.
func TestChromiumOffers(t *testing.T) {
	for _, c := range []struct {
		name string
		mic  bool
	}{{"microphone", true}, {"mdns", false}} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			mic := "0"
			if c.mic {
				mic = "1"
			}
			opts := pageOpts{query: "role=offer&mic=" + mic, mic: c.mic}
			cfg := Config{LoopbackOnly: true, Audio: AudioTone}
			if !c.mic {
				// Without permission, Chromium as it comes (no loopback
				// candidates): its .local names are all the Go peer learns
				// of it. It runs on a host of our own (a network namespace
				// joined by a veth pair), so that its mDNS announcements
				// stay on that link and never reach the machine's network.
				requireChromium(t)
				h := newHosts(t)
				// Chromium gathers, without permission, only on the
				// interface of the default route: the link to this host
				// (which forwards nothing: ip_forward is not touched).
				if err := h.run("-n", h.ns, "route", "add", "default", "via", "10.231.7.1"); err != nil {
					t.Fatal(err)
				}
				_, subnet, _ := net.ParseCIDR("10.231.7.0/24")
				opts.noLoopback, opts.listen, opts.wrap = true, "10.231.7.1", []string{h.ip, "netns", "exec", h.ns}
				cfg = Config{Networks: []*net.IPNet{subnet}, Audio: AudioTone}
			}
			p := startChromiumPage(t, opts)
			var offer string
			offer = p.waitOffer(t, ctx)
			codecs, cands := audioCodecs(t, offer)
			if len(codecs) == 0 || codecs[0] != "opus" {
				t.Fatalf("Chromium's audio codecs %v: expected Opus first", codecs)
			}
			if !strings.Contains(offer, "m=application") || !strings.Contains(offer, "webrtc-datachannel") {
				t.Fatalf("Chromium's offer has no SCTP DataChannel:\n%s", offer)
			}
			mdns := false
			for _, cand := range cands {
				if f := strings.Fields(cand); len(f) > 4 && strings.HasSuffix(f[4], ".local") {
					mdns = true
				}
			}
			if !c.mic && !mdns {
				t.Fatalf("without microphone permission Chromium should hide its host addresses behind .local names:\n%v", cands)
			}
			t.Logf("Chromium's offer: codecs %v, candidates %q", codecs, cands)
			peer, answer, err := Answer(ctx, cfg, []byte(offer))
			if err != nil {
				t.Fatalf("answering Chromium's offer: %v", err)
			}
			defer peer.Close()
			p.answer <- string(answer)
			exchange(t, ctx, peer, p, c.mic)
		})
	}
}

// TestChromiumAnswers: the Go peer's offer (G.711, the paysip DataChannel,
// loopback candidates) answered by Chromium.
func TestChromiumAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	peer, offer, err := NewOffer(ctx, Config{LoopbackOnly: true, Audio: AudioTone})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	p := startChromiumPage(t, pageOpts{query: "role=answer&mic=1", mic: true, goOffer: offer})
	select {
	case answer := <-p.answer:
		if err := peer.SetAnswer([]byte(answer)); err != nil {
			t.Fatalf("Chromium's answer: %v\n%s", err, answer)
		}
	case rep := <-p.reports:
		t.Fatalf("page, before answering: %s", rep.Error)
	case <-ctx.Done():
		t.Fatal("no answer from Chromium")
	}
	exchange(t, ctx, peer, p, true)
}

// TestChromiumAcrossHosts: Chromium on another host (a network namespace
// joined by a veth pair: 10.231.7.2 there, 10.231.7.1 here) offers; the Go
// peer, restricted to that network, answers. The pair ICE selects crosses
// the link, not loopback.
func TestChromiumAcrossHosts(t *testing.T) {
	requireChromium(t)
	h := newHosts(t)
	_, subnet, _ := net.ParseCIDR("10.231.7.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	p := startChromiumPage(t, pageOpts{query: "role=offer&mic=1", mic: true, listen: "10.231.7.1", wrap: []string{h.ip, "netns", "exec", h.ns}})
	var offer string
	offer = p.waitOffer(t, ctx)
	if !strings.Contains(offer, " 10.231.7.2 ") {
		t.Fatalf("Chromium's offer has no candidate on the link:\n%s", offer)
	}
	peer, answer, err := Answer(ctx, Config{Networks: []*net.IPNet{subnet}, Audio: AudioTone}, []byte(offer))
	if err != nil {
		t.Fatalf("answering Chromium's offer: %v", err)
	}
	defer peer.Close()
	p.answer <- string(answer)
	rep := exchange(t, ctx, peer, p, true)
	if !strings.HasSuffix(rep.LocalCandidate, " 10.231.7.2") || !strings.HasSuffix(rep.RemoteCandidate, " 10.231.7.1") {
		t.Fatalf("Chromium's selected pair %s -> %s does not cross the link", rep.LocalCandidate, rep.RemoteCandidate)
	}
}
