package sipserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// rawUDP is a UDP peer on a chosen loopback address (the whole of
// 127.0.0.0/8 is local): a source of its own for the per-source limits.
type rawUDP struct {
	t    *testing.T
	c    *net.UDPConn
	sent int
}

func newRawUDP(t *testing.T, local, server string) *rawUDP {
	t.Helper()
	raddr, _ := net.ResolveUDPAddr("udp", server)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUDP{t: t, c: c}
}

func (u *rawUDP) send(b []byte) {
	u.t.Helper()
	if _, err := u.c.Write(b); err != nil {
		u.t.Fatal(err)
	}
	u.sent += len(b)
}

// recv returns the next datagram, or nil after d.
func (u *rawUDP) recv(d time.Duration) []byte {
	buf := make([]byte, 65536)
	u.c.SetReadDeadline(time.Now().Add(d))
	n, err := u.c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// sipRequest is a request as a scanner or a flood tool writes it; pad
// adds a Subject header of that many bytes.
func sipRequest(method, ruri, to, via, branch string, pad int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n", method, ruri, via, branch)
	fmt.Fprintf(&b, "From: <sip:probe@%s>;tag=%s\r\nTo: <%s>\r\nCall-ID: %s@probe\r\nCSeq: 1 %s\r\n", domain, branch, to, branch, method)
	if method == "REGISTER" {
		fmt.Fprintf(&b, "Contact: <sip:probe@%s>\r\n", via)
	}
	if pad > 0 {
		fmt.Fprintf(&b, "Subject: %s\r\n", strings.Repeat("x", pad))
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

func statusOf(res []byte) string {
	if len(res) < 12 {
		return ""
	}
	return string(res[8:11])
}

// TestRateLimitPerSource: one source sending faster than its request rate
// is answered 503 with Retry-After (RFC 3261 sections 21.5.4, 20.33), for
// every method; another source, and a real user agent, are still served.
func TestRateLimitPerSource(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Limits.RequestRate, c.Limits.RequestBurst = 2, 5 })
	attacker := newRawUDP(t, "127.0.0.2", r.proxy())
	local := attacker.c.LocalAddr().String()
	var ok, limited int
	for i := 0; i < 20; i++ {
		attacker.send(sipRequest("OPTIONS", "sip:"+domain, "sip:"+domain, local, fmt.Sprint("opt", i), 300))
	}
	for i, m := range []string{"REGISTER", "INVITE", "MESSAGE", "SUBSCRIBE"} {
		attacker.send(sipRequest(m, "sip:alice@"+domain, "sip:alice@"+domain, local, fmt.Sprint("m", i), 300))
	}
	for res := attacker.recv(2 * time.Second); res != nil; res = attacker.recv(time.Second) {
		switch statusOf(res) {
		case "200":
			ok++
		case "503":
			limited++
			if !bytes.Contains(res, []byte("\r\nRetry-After: ")) {
				t.Fatalf("503 without Retry-After:\n%s", res)
			}
		}
	}
	// Burst 5: five served, then 503s; far over the rate (twice the
	// burst) datagrams are dropped unread, no transaction made.
	if limited < 3 || ok > 8 || ok+limited > 16 {
		t.Fatalf("24 requests at once from one source, burst 5: %d answered 200, %d answered 503", ok, limited)
	}
	// Another source is served, and so is a real client on TCP.
	other := newRawUDP(t, "127.0.0.3", r.proxy())
	other.send(sipRequest("OPTIONS", "sip:"+domain, "sip:"+domain, other.c.LocalAddr().String(), "other", 300))
	if res := other.recv(3 * time.Second); statusOf(res) != "200" {
		t.Fatalf("another source's OPTIONS: %q", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.ua("alice", true).Register(ctx, 300); err != nil {
		t.Fatalf("alice registering from another source: %v", err)
	}
	t.Logf("one source, 24 requests at once: %d answered, %d refused with 503, %d dropped", ok, limited, 24-ok-limited)
}

// TestUDPNoReflection: a UDP source that has not proved its address gets
// no more than twice the bytes it sent (the default factor). The 401 to a
// minimal REGISTER is more than twice its size: dropped, until the
// retransmission earns it. sipp (in the interop tests) and a real client
// with digest credentials register over UDP.
func TestUDPNoReflection(t *testing.T) {
	r := startServer(t, nil)
	spoofed := newRawUDP(t, "127.0.0.4", r.proxy())
	local := spoofed.c.LocalAddr().String()
	// The smallest REGISTER that earns a challenge (compact headers, RFC
	// 3261 section 7.3.3): the reflector's favourite.
	reg := []byte("REGISTER sip:" + domain + " SIP/2.0\r\nv: SIP/2.0/UDP " + local + ";branch=z9hG4bKr\r\nf: <sip:a@" + domain +
		">;tag=a\r\nt: <sip:a@" + domain + ">\r\ni: r\r\nCSeq: 1 REGISTER\r\n\r\n")
	spoofed.send(reg)
	if res := spoofed.recv(1500 * time.Millisecond); res != nil {
		t.Fatalf("a %d-byte REGISTER from an unproved source was answered with %d bytes:\n%s", len(reg), len(res), res)
	}
	// The client's retransmission (RFC 3261 17.1.2.2) earns the answer.
	spoofed.send(reg)
	res := spoofed.recv(3 * time.Second)
	if statusOf(res) != "401" || len(res) > 2*spoofed.sent {
		t.Fatalf("after a retransmission (%d bytes sent): %q", spoofed.sent, res)
	}
	got := len(res)
	for i := 0; i < 3; i++ {
		spoofed.send(sipRequest("OPTIONS", "sip:"+domain, "sip:"+domain, local, fmt.Sprint("opt", i), 0))
		for res := spoofed.recv(time.Second); res != nil; res = spoofed.recv(500 * time.Millisecond) {
			got += len(res)
		}
	}
	if got > 2*spoofed.sent {
		t.Fatalf("an unproved source sent %d bytes and was sent %d", spoofed.sent, got)
	}
	// A user agent with credentials registers over UDP as ever.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	alice, err := sipua.New(sipua.Config{AOR: "sip:alice@" + domain, Proxy: r.proxy(), Transport: "udp", Username: "alice", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Register(ctx, 300); err != nil {
		t.Fatalf("REGISTER over UDP with credentials: %v", err)
	}
	t.Logf("unproved source: %d-byte REGISTER unanswered; its 401 (%d bytes) sent only after the retransmission", len(reg), len(res))
}

// TestConnectionCaps: over the cap per source and in total, a connection
// is closed at once; others are still served.
func TestConnectionCaps(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Limits.MaxConnsPerIP, c.Limits.MaxConns = 3, 5 })
	dial := func(local string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", r.proxy())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err)
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		held = append(held, dial("127.0.0.7"))
	}
	for _, c := range held {
		if closedAtOnce(c) {
			t.Fatal("a connection under the cap was closed")
		}
	}
	if c := dial("127.0.0.7"); !closedAtOnce(c) {
		t.Fatal("a fourth connection from one source (cap 3) was kept")
	}
	dial("127.0.0.8")
	dial("127.0.0.9")
	if c := dial("127.0.0.10"); !closedAtOnce(c) {
		t.Fatal("a sixth connection (total cap 5) was kept")
	}
	// Closing frees the places.
	held[0].Close()
	time.Sleep(200 * time.Millisecond)
	c := dial("127.0.0.10")
	fmt.Fprintf(c, "%s", sipRequest("OPTIONS", "sip:"+domain, "sip:"+domain, c.LocalAddr().String(), "tcpopt", 300))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("OPTIONS on a freed place: %q", line)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestIdleTimeouts: idle TCP, TLS, WebSocket and HTTP keep-alive connections
// are closed after the idle timeout; a connection that carries a
// registration stays open (the registrar reaches the contact through it).
func TestIdleTimeouts(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Open = true; c.Limits.IdleTimeout = time.Second })
	certFile, keyFile, pool := selfSigned(t)
	rt := startServer(t, func(c *sipserver.Config) {
		c.Open = true
		c.Limits.IdleTimeout = time.Second
		c.TLSCert, c.TLSKey, c.TLSAddr = certFile, keyFile, "127.0.0.1:0"
	})
	start := time.Now()
	tlsConn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", rt.srv.TLSPort()), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsConn.Close()
	tcp, err := net.Dial("tcp", r.proxy())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	ws, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.srv.HTTPPort()))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	fmt.Fprintf(ws, "GET /sip HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
	wsr := bufio.NewReader(ws)
	if line, _ := wsr.ReadString('\n'); !strings.Contains(line, "101") {
		t.Fatalf("upgrade: %q", line)
	}
	keep, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.srv.HTTPPort()))
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	fmt.Fprintf(keep, "GET /api/directory HTTP/1.1\r\nHost: x\r\n\r\n")
	kr := bufio.NewReader(keep)
	if res, err := http.ReadResponse(kr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, res.Body)
	}
	// A registered flow: REGISTER over TCP, with a contact reachable only
	// through this connection.
	reg, err := net.Dial("tcp", r.proxy())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	regReq := strings.Replace(string(sipRequest("REGISTER", "sip:"+domain, "sip:carol@"+domain, reg.LocalAddr().String(), "flow1", 0)),
		"SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	regReq = strings.Replace(regReq, "Contact: <sip:probe@"+reg.LocalAddr().String()+">", "Contact: <sip:carol@ab12cd34.invalid;transport=tcp>\r\nExpires: 300", 1)
	fmt.Fprint(reg, regReq)
	rr := bufio.NewReader(reg)
	if line, _ := rr.ReadString('\n'); !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("REGISTER over TCP: %q", line)
	}

	var wg sync.WaitGroup
	closedAfter := func(name string, rd io.Reader, c net.Conn) {
		defer wg.Done()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, rd)
		if isTimeout(err) {
			t.Errorf("%s: still open after 10 s (idle timeout 1 s)", name)
			return
		}
		t.Logf("%s: closed after %v idle", name, time.Since(start).Round(100*time.Millisecond))
	}
	wg.Add(4)
	go closedAfter("idle TLS", tlsConn, tlsConn)
	go closedAfter("idle TCP", tcp, tcp)
	go closedAfter("idle WebSocket", wsr, ws)
	go closedAfter("idle HTTP keep-alive", kr, keep)
	wg.Wait()
	// The registered connection outlived them: a MESSAGE to carol comes
	// down it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go r.ua("dave", false).Message(ctx, uri("sip:carol@"+domain), "text/plain", []byte("still there"))
	reg.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := rr.ReadString('\n')
		if err != nil {
			t.Fatalf("the registered connection (%v idle) was closed: %v", time.Since(start), err)
		}
		if strings.HasPrefix(line, "MESSAGE ") {
			break
		}
	}
}

// TestOversizeAndGarbage: a message over the size limit is refused on
// UDP and on TCP, and a 60 KB garbage datagram writes no error and no
// long line to the log: a short, quoted warning at most once a second.
func TestOversizeAndGarbage(t *testing.T) {
	var logs syncBuffer
	r := startServer(t, func(c *sipserver.Config) {
		c.Open = true
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	u := newRawUDP(t, "127.0.0.11", r.proxy())
	garbage := bytes.Repeat([]byte("\x01garbage\xff"), 6000)
	for i := 0; i < 5; i++ {
		u.send(garbage)
		u.send(garbage[:1000])
	}
	// 20 KB, well framed, over TCP: over the 16 KiB limit, the connection
	// is closed unanswered.
	c, err := net.Dial("tcp", r.proxy())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := strings.Replace(string(sipRequest("OPTIONS", "sip:"+domain, "sip:"+domain, c.LocalAddr().String(), "big", 20000)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	fmt.Fprint(c, big)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatalf("a 20 KB message was answered: %q", line)
	}
	// Still serving.
	u.send(sipRequest("OPTIONS", "sip:"+domain, "sip:"+domain, u.c.LocalAddr().String(), "after", 400))
	if res := u.recv(3 * time.Second); statusOf(res) != "200" {
		t.Fatalf("OPTIONS after the garbage: %q", res)
	}
	time.Sleep(200 * time.Millisecond)
	out := logs.String()
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 1000 || strings.Contains(line, "level=ERROR") {
			t.Fatalf("log line of %d bytes:\n%.600s", len(line), line)
		}
	}
	if !strings.Contains(out, "level=WARN") {
		t.Fatalf("the garbage was not reported at all:\n%s", out)
	}
	t.Logf("log after 10 garbage datagrams (60 KB and 1 KB) and a 20 KB message: %d bytes", len(out))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readSIP reads one message without a body from a stream.
func readSIP(r *bufio.Reader) (sip.Message, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		b.WriteString(line)
		if line == "\r\n" && b.Len() > 2 {
			return sip.ParseMessage([]byte(b.String()))
		}
	}
}

// TestAnsweredCallKeepsCallerFlow: the connection of a caller that did
// not register outlives the idle timeout once its call is answered (a
// paid call sends no SIP while it lasts; the BYE must still reach it).
func TestAnsweredCallKeepsCallerFlow(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Open = true; c.Limits.IdleTimeout = time.Second })
	callee, err := net.Dial("tcp", r.proxy())
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	reg := strings.Replace(string(sipRequest("REGISTER", "sip:"+domain, "sip:carol@"+domain, callee.LocalAddr().String(), "flow2", 0)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	reg = strings.Replace(reg, "Contact: <sip:probe@"+callee.LocalAddr().String()+">", "Contact: <sip:carol@ab12cd34.invalid;transport=tcp>\r\nExpires: 300", 1)
	fmt.Fprint(callee, reg)
	cr := bufio.NewReader(callee)
	if m, err := readSIP(cr); err != nil || m.(*sip.Response).StatusCode != 200 {
		t.Fatalf("REGISTER: %v %v", m, err)
	}
	caller, err := net.Dial("tcp", r.proxy())
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	inv := strings.Replace(string(sipRequest("INVITE", "sip:carol@"+domain, "sip:carol@"+domain, caller.LocalAddr().String(), "call1", 0)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	inv = strings.Replace(inv, "Content-Length: 0", "Contact: <sip:dave@cd34ef56.invalid;transport=tcp>\r\nContent-Length: 0", 1)
	fmt.Fprint(caller, inv)
	callee.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := readSIP(cr)
	if err != nil {
		t.Fatalf("the INVITE did not reach the callee: %v", err)
	}
	res := sip.NewResponseFromRequest(m.(*sip.Request), 200, "OK", nil)
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "carol", Host: "ab12cd34.invalid", UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
	fmt.Fprint(callee, res.String())
	rr := bufio.NewReader(caller)
	caller.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, err := readSIP(rr)
		if err != nil {
			t.Fatalf("no 200 for the caller: %v", err)
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode == 200 {
			break
		}
	}
	time.Sleep(2500 * time.Millisecond)
	caller.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := rr.ReadByte(); !isTimeout(err) {
		t.Fatalf("the caller's connection, idle 2.5 s with its call up: %v", err)
	}
}
