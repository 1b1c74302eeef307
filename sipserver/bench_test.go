package sipserver_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paysip/paysip/sipauth"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/store"
)

// Hot-path benchmarks: a real server on loopback UDP, driven by a raw UDP
// client in the same process that keeps a window of requests in flight
// (as sipp does). ns/op is the cost of one REGISTER (or one whole call),
// server and client together; run with -cpu 1 to see one core's figure,
// -cpuprofile to see where it goes (docs/performance.md).
//
//	go test ./sipserver -run X -bench . -benchtime 20000x -cpu 1

func startBench(b *testing.B, open bool) (*sipserver.Server, *store.DB) {
	b.Helper()
	db, err := store.Open(filepath.Join(b.TempDir(), "paysip.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	lim := sipserver.DefaultLimits
	lim.MaxTransactions = 1_000_000
	lim.Exempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	cfg := sipserver.Config{Domain: domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Accounts: db, Open: open,
		Limits: lim, MaxBindings: 1_000_000, Log: slog.New(slog.DiscardHandler)}
	srv, err := sipserver.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		b.Fatal(err)
	}
	return srv, db
}

// udpPeer is a raw SIP peer on loopback UDP.
type udpPeer struct {
	b    testing.TB
	conn *net.UDPConn
	port int
	srv  *net.UDPAddr
	buf  []byte
}

func newUDPPeer(b testing.TB, srv *sipserver.Server) *udpPeer {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	b.Cleanup(func() { c.Close() })
	return &udpPeer{b: b, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port,
		srv: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srv.SIPPort()}, buf: make([]byte, 65536)}
}

func (p *udpPeer) send(msg string) {
	if _, err := p.conn.WriteToUDP([]byte(msg), p.srv); err != nil {
		p.b.Fatal(err)
	}
}

// recv returns the next datagram (a copy), failing after 10 s.
func (p *udpPeer) recv() string {
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := p.conn.ReadFromUDP(p.buf)
	if err != nil {
		p.b.Fatalf("no message: %v", err)
	}
	return string(p.buf[:n])
}

func register(port, i int, extra string) string {
	return fmt.Sprintf("REGISTER sip:%[3]s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%[1]d;branch=z9hG4bK-r%[2]d-%[5]d\r\n"+
		"From: <sip:user%[2]d@%[3]s>;tag=t%[2]d\r\nTo: <sip:user%[2]d@%[3]s>\r\nCall-ID: reg-%[2]d@127.0.0.1\r\nCSeq: %[5]d REGISTER\r\n"+
		"Contact: <sip:user%[2]d@127.0.0.1:%[1]d>\r\n%[4]sExpires: 300\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", port, i, domain, extra, 1)
}

// window runs n exchanges with at most w in flight: start(i) sends the
// first message of exchange i; handle(msg) processes one received
// message and reports whether it finished an exchange.
func window(b *testing.B, n, w int, start func(i int), handle func(msg string) bool) {
	sent, done := 0, 0
	for sent < n && sent < w {
		start(sent)
		sent++
	}
	for done < n {
		if handle("") {
			done++
			if sent < n {
				start(sent)
				sent++
			}
		}
	}
}

func BenchmarkRegisterUDP(b *testing.B) {
	srv, _ := startBench(b, true)
	p := newUDPPeer(b, srv)
	b.ReportAllocs()
	b.ResetTimer()
	window(b, b.N, 64, func(i int) { p.send(register(p.port, i%100_000, "")) }, func(string) bool {
		m := p.recv()
		if !strings.HasPrefix(m, "SIP/2.0 200 ") {
			b.Fatalf("got %q", m[:min(len(m), 200)])
		}
		return true
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "REGISTER/s")
}

// BenchmarkRegisterDigestUDP: REGISTER, 401, REGISTER with credentials,
// 200 (one op), over 50 accounts.
func BenchmarkRegisterDigestUDP(b *testing.B) {
	srv, db := startBench(b, false)
	const users = 50
	for i := 0; i < users; i++ {
		if err := db.AddUser(context.Background(), "user"+strconv.Itoa(i), domain, "password"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	p := newUDPPeer(b, srv)
	b.ReportAllocs()
	b.ResetTimer()
	nc, challenges := 0, 0
	// Every registration its own Call-ID, as sipp's [call_id].
	callID := func(msg string, id string) string {
		return strings.Replace(msg, "Call-ID: reg-", "Call-ID: "+id+"-reg-", 1)
	}
	window(b, b.N, 64, func(i int) { p.send(callID(register(p.port, i%users, ""), "op"+strconv.Itoa(i))) }, func(string) bool {
		m := p.recv()
		switch {
		case strings.HasPrefix(m, "SIP/2.0 200 "):
			return true
		case strings.HasPrefix(m, "SIP/2.0 401 "):
			challenges++
			u := between(m, "To: <sip:user", "@")
			i, _ := strconv.Atoi(u)
			chal := between(m, "WWW-Authenticate: ", "\r\n")
			nonce := between(chal, `nonce="`, `"`)
			nc++
			ncs := fmt.Sprintf("%08x", nc)
			ha1 := sipauth.HA1("MD5", "user"+u, domain, "password"+u)
			ha2 := md5s("REGISTER:sip:" + domain)
			resp := md5s(ha1 + ":" + nonce + ":" + ncs + ":c0ffee:auth:" + ha2)
			auth := fmt.Sprintf("Authorization: Digest username=\"user%s\", realm=\"%s\", nonce=\"%s\", uri=\"sip:%s\", response=\"%s\", algorithm=MD5, qop=auth, nc=%s, cnonce=\"c0ffee\"\r\n",
				u, domain, nonce, domain, resp, ncs)
			// A new request: CSeq 2 and its own branch (RFC 3261 section 8.1.1.7).
			op, _, _ := strings.Cut(between(m, "Call-ID: ", "\r\n"), "-reg-")
			again := strings.Replace(callID(register(p.port, i, auth), op), "CSeq: 1 ", "CSeq: 2 ", 1)
			p.send(strings.Replace(again, ";branch=z9hG4bK-r", ";branch=z9hG4bK-a", 1))
			return false
		default:
			b.Fatalf("got %q", m[:min(len(m), 300)])
		}
		return false
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
	b.ReportMetric(float64(challenges)/float64(b.N), "401/op")
}

func between(s, a, z string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, z)
	return v
}

// BenchmarkCallUDP: one op is a whole call through the proxy between two
// raw UDP peers: INVITE, 180, 200, ACK, BYE, 200, record-routed, the
// callee found by its registration.
func BenchmarkCallUDP(b *testing.B) {
	srv, _ := startBench(b, true)
	caller, callee := newUDPPeer(b, srv), newUDPPeer(b, srv)
	callee.send(register(callee.port, 0, ""))
	if m := callee.recv(); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		b.Fatalf("register: %q", m)
	}
	// The callee answers everything in a goroutine.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 65536)
		for {
			callee.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, from, err := callee.conn.ReadFromUDP(buf)
			select {
			case <-stop:
				return
			default:
			}
			if err != nil {
				continue
			}
			m := buf[:n]
			switch {
			case bytes.HasPrefix(m, []byte("INVITE ")):
				callee.conn.WriteToUDP(answer(m, "180 Ringing", ""), from)
				callee.conn.WriteToUDP(answer(m, "200 OK", fmt.Sprintf("Contact: <sip:user0@127.0.0.1:%d>\r\n", callee.port)), from)
			case bytes.HasPrefix(m, []byte("BYE ")):
				callee.conn.WriteToUDP(answer(m, "200 OK", ""), from)
			}
		}
	}()
	route := fmt.Sprintf("<sip:127.0.0.1:%d;lr>", srv.SIPPort())
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	window(b, b.N, callWindow, func(i int) {
		caller.send(fmt.Sprintf("INVITE sip:user0@%[3]s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%[1]d;branch=z9hG4bK-i%[2]d\r\nRoute: %[4]s\r\n"+
			"From: <sip:caller@%[3]s>;tag=c%[2]d\r\nTo: <sip:user0@%[3]s>\r\nCall-ID: call-%[2]d@127.0.0.1\r\nCSeq: 1 INVITE\r\n"+
			"Contact: <sip:caller@127.0.0.1:%[1]d>\r\nSupported: paysip\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: %[5]d\r\n\r\n%[6]s",
			caller.port, i, domain, route, len(sdp), sdp))
	}, func(string) bool {
		m := caller.recv()
		code := m[8:11]
		cseq := between(m, "CSeq: ", "\r\n")
		switch {
		case code == "200" && strings.HasSuffix(cseq, "INVITE"):
			// ACK and BYE along the Record-Route, to the callee's Contact.
			var routes []string
			for _, l := range strings.Split(m, "\r\n") {
				if v, ok := strings.CutPrefix(l, "Record-Route: "); ok {
					routes = append(routes, v)
				}
			}
			rr := "Route: " + strings.Join(routes, ", ") + "\r\n"
			ruri := between(between(m, "Contact: ", "\r\n"), "<", ">")
			cid := between(m, "Call-ID: ", "\r\n")
			i := between(cid, "call-", "@")
			to := between(m, "To: ", "\r\n")
			common := fmt.Sprintf("%sFrom: <sip:caller@%s>;tag=c%s\r\nTo: %s\r\nCall-ID: %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n", rr, domain, i, to, cid)
			caller.send(fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-a%s\r\nCSeq: 1 ACK\r\n%s\r\n", ruri, caller.port, i, common))
			caller.send(fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-b%s\r\nCSeq: 2 BYE\r\n%s\r\n", ruri, caller.port, i, common))
		case code == "200" && strings.HasSuffix(cseq, "BYE"):
			return true
		case code == "180" || code == "100":
		default:
			b.Fatalf("caller got %q", m[:min(len(m), 300)])
		}
		return false
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	// The CPU time of the process (server and the two raw peers) per
	// call: less sensitive than the rate to a machine shared with others.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/call")
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var callWindow = 32

const sdp = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// answer builds a response to a request: its Via, From, To (tagged),
// Call-ID, CSeq and Record-Route, plus extra headers (and an SDP body for
// a 200 to an INVITE).
func answer(req []byte, status, extra string) []byte {
	var out bytes.Buffer
	out.WriteString("SIP/2.0 " + status + "\r\n")
	invite200 := bytes.HasPrefix(req, []byte("INVITE ")) && strings.HasPrefix(status, "200")
	for _, l := range strings.Split(string(req), "\r\n") {
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq", "record-route":
			out.WriteString(l + "\r\n")
		case "to":
			if !strings.Contains(l, "tag=") {
				l += ";tag=callee"
			}
			out.WriteString(l + "\r\n")
		}
	}
	out.WriteString(extra)
	if invite200 {
		fmt.Fprintf(&out, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(sdp), sdp)
	} else {
		out.WriteString("Content-Length: 0\r\n\r\n")
	}
	return out.Bytes()
}

func md5s(v string) string {
	h := md5.Sum([]byte(v))
	return hex.EncodeToString(h[:])
}

func BenchmarkCallUDPSerial(b *testing.B) {
	callWindow = 1
	defer func() { callWindow = 32 }()
	BenchmarkCallUDP(b)
}
