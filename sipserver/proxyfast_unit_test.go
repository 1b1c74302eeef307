package sipserver

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The stateless in-dialog path (proxyfast.go) without sockets: a server
// made by New whose UDP socket records what is written.

type recordConn struct {
	mu     sync.Mutex
	writes []recorded
}

type recorded struct {
	data []byte
	to   netip.AddrPort
}

func (c *recordConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (c *recordConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, recorded{append([]byte(nil), b...), addrPort(a)})
	return len(b), nil
}
func (c *recordConn) Close() error { return nil }
func (c *recordConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
}
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recordConn) take() []recorded {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

const (
	fpDomain = "paysip.test"
	caller   = "127.0.0.1:40001"
	callee   = "127.0.0.1:40002"
)

var callerAddr = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(caller))
var calleeAddr = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(callee))

// fastRig is a server (not running: its UDP socket is a recordConn) with
// one dialog established through it, between caller and callee.
type fastRig struct {
	s      *Server
	conn   *recordConn
	rr     string // the Record-Route value of the dialog
	callID string
}

func newFastRig(t testing.TB) *fastRig {
	s, err := New(Config{Domain: fpDomain, SIPAddr: "127.0.0.1:5060", Open: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.sipPort = 5060
	conn := &recordConn{}
	s.udp = newUDPGuard(conn, s.lim, s.input, s.log, s.now)
	s.cfg.Open = false // the token and dialog checks, as with accounts
	r := &fastRig{s: s, conn: conn, callID: "fast-1"}
	inv := r.parseReq(t, fmt.Sprintf("INVITE sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-i1;rport\r\nFrom: <sip:alice@%s>;tag=a1\r\n"+
		"To: <sip:bob@%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		fpDomain, caller, fpDomain, fpDomain, r.callID, caller))
	inv.SetSource(caller)
	inv.SetTransport("UDP")
	tok := s.rrToken(inv, s.now())
	rr := s.recordRoute("UDP", tok)
	r.rr = rr.Value()
	res := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	res.To().Params.Add("tag", "b1")
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 40002}})
	res.AppendHeader(sip.NewHeader("Record-Route", r.rr))
	res.SetSource(callee)
	res.SetTransport("UDP")
	s.dialogEvent(inv, res)
	if s.dialogs.len() != 1 {
		t.Fatal("no dialog")
	}
	return r
}

func (r *fastRig) parseReq(t testing.TB, m string) *sip.Request {
	msg, err := sip.ParseMessage([]byte(m))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

// inDialog is a request from the caller along the dialog's route set.
func (r *fastRig) inDialog(method, branch string, extra ...string) string {
	return fmt.Sprintf("%s sip:bob@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nRoute: %s\r\nFrom: <sip:alice@%s>;tag=a1\r\n"+
		"To: <sip:bob@%s>;tag=b1\r\nCall-ID: %s\r\nCSeq: 2 %s\r\n%sContent-Length: 0\r\n\r\n",
		method, callee, caller, branch, r.rr, fpDomain, fpDomain, r.callID, method, strings.Join(extra, ""))
}

func parse(t testing.TB, b []byte) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("%v: %q", err, b)
	}
	return m
}

func TestFastPathForwardsInDialog(t *testing.T) {
	r := newFastRig(t)
	before := r.s.Forwarded()
	bye := r.inDialog("BYE", "z9hG4bK-b1", "Max-Forwards: 70\r\n")
	if !r.s.fastPath([]byte(bye), callerAddr) {
		t.Fatal("BYE left to sipgo")
	}
	w := r.conn.take()
	if len(w) != 1 || w[0].to.String() != callee {
		t.Fatalf("writes %v", w)
	}
	fwd := parse(t, w[0].data).(*sip.Request)
	vias := fwd.GetHeaders("Via")
	if len(vias) != 2 {
		t.Fatalf("Vias: %s", fwd)
	}
	top := vias[0].(*sip.ViaHeader)
	branch, _ := top.Params.Get("branch")
	if !strings.HasPrefix(branch, branchMagic) || !strings.Contains(branch, statelessMark) || top.Host != "127.0.0.1" || top.Port != 5060 {
		t.Fatalf("our Via: %s", top.Value())
	}
	// RFC 3261 section 18.2.1 and RFC 3581: received and rport stamped.
	if got := vias[1].Value(); !strings.Contains(got, "rport=40001") || !strings.Contains(got, "received=127.0.0.1") {
		t.Fatalf("caller's Via: %s", got)
	}
	// Section 16.4: our Route popped; 16.6 step 3: Max-Forwards - 1.
	if fwd.GetHeader("Route") != nil || fwd.MaxForwards().Val() != 69 || fwd.Recipient.String() != "sip:bob@"+callee {
		t.Fatalf("forwarded: %s", fwd)
	}
	if r.s.Forwarded() != before+1 {
		t.Fatal("not counted")
	}
	// Section 16.11: a retransmission gets the same branch.
	r.s.fastPath([]byte(bye), callerAddr)
	w = r.conn.take()
	if len(w) != 1 {
		t.Fatalf("retransmission: %d writes", len(w))
	}
	if b, _ := parse(t, w[0].data).(*sip.Request).Via().Params.Get("branch"); b != branch {
		t.Fatalf("retransmission's branch %s, first %s", b, branch)
	}
	// Another request of the dialog, another branch.
	r.s.fastPath([]byte(r.inDialog("INFO", "z9hG4bK-n1", "Max-Forwards: 70\r\n")), callerAddr)
	w = r.conn.take()
	if len(w) != 1 {
		t.Fatalf("INFO: %d writes", len(w))
	}
	if b, _ := parse(t, w[0].data).(*sip.Request).Via().Params.Get("branch"); b == branch {
		t.Fatal("INFO got the BYE's branch")
	}

	// The callee's 200 to the BYE: our Via removed, sent to the caller's
	// rport; the dialog is over.
	res := sip.NewResponseFromRequest(fwd, 200, "OK", nil)
	if !r.s.fastPath([]byte(res.String()), calleeAddr) {
		t.Fatal("response left to sipgo")
	}
	w = r.conn.take()
	if len(w) != 1 || w[0].to.String() != caller {
		t.Fatalf("response writes %v", w)
	}
	up := parse(t, w[0].data).(*sip.Response)
	if n := len(up.GetHeaders("Via")); n != 1 || up.StatusCode != 200 {
		t.Fatalf("relayed: %s", up)
	}
	if r.s.dialogs.len() != 0 {
		t.Fatal("dialog not ended by the BYE's 200")
	}
	// Now the token opens nothing: left to sipgo (which answers 403).
	if r.s.fastPath([]byte(r.inDialog("BYE", "z9hG4bK-b2", "Max-Forwards: 70\r\n")), callerAddr) {
		t.Fatal("BYE of an ended dialog forwarded statelessly")
	}
}

func TestFastPathForgedResponse(t *testing.T) {
	r := newFastRig(t)
	r.s.fastPath([]byte(r.inDialog("BYE", "z9hG4bK-b1", "Max-Forwards: 70\r\n")), callerAddr)
	fwd := parse(t, r.conn.take()[0].data).(*sip.Request)
	// The Via below ours pointed elsewhere: the MAC fails, nothing sent.
	res := sip.NewResponseFromRequest(fwd, 200, "OK", nil)
	s := strings.Replace(res.String(), "received=127.0.0.1", "received=127.0.0.9", 1)
	if !r.s.fastPath([]byte(s), calleeAddr) {
		t.Fatal("forged response left to sipgo")
	}
	// Our branch without a Via below, a branch with a MAC we never made.
	only := strings.Replace(res.String(), res.GetHeaders("Via")[1].Value(), "SIP/2.0/UDP 127.0.0.9:5;branch=z9hG4bK-x", 1)
	r.s.fastPath([]byte(only), calleeAddr)
	top, _ := res.Via().Params.Get("branch")
	r.s.fastPath([]byte(strings.Replace(res.String(), top, top[:len(top)-3]+"AAA", 1)), calleeAddr)
	if w := r.conn.take(); len(w) != 0 {
		t.Fatalf("forged responses relayed: %v", w)
	}
	if r.s.dialogs.len() != 1 {
		t.Fatal("a forged 200 ended the dialog")
	}
}

// TestFastPathLeavesToSipgo: everything the stateless path must not
// decide goes to sipgo's path untouched, nothing written.
func TestFastPathLeavesToSipgo(t *testing.T) {
	r := newFastRig(t)
	loopReq := r.parseReq(t, r.inDialog("BYE", "z9hG4bK-l1", "Max-Forwards: 70\r\n"))
	loopVia := fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=%s%s%sxyz\r\n", branchMagic, r.s.loopHash(loopReq), statelessMark)
	r.s.failedInvites.add(&sip.ViaHeader{Host: "127.0.0.1", Port: 40001, Params: sip.HeaderParams{{K: "branch", V: "z9hG4bK-f1"}}}, r.s.now())
	cases := map[string]string{
		"Max-Forwards 0 (483)":      r.inDialog("BYE", "z9hG4bK-m0", "Max-Forwards: 0\r\n"),
		"ACK, Max-Forwards 0":       r.inDialog("ACK", "z9hG4bK-m1", "Max-Forwards: 0\r\n"),
		"loop (482)":                strings.Replace(r.inDialog("BYE", "z9hG4bK-l1", "Max-Forwards: 70\r\n"), "Route:", strings.TrimSuffix(loopVia, "\r\n")+"\r\nRoute:", 1),
		"no To tag":                 strings.Replace(r.inDialog("BYE", "z9hG4bK-t", ""), ";tag=b1", "", 1),
		"token of another dialog":   strings.Replace(r.inDialog("BYE", "z9hG4bK-c", ""), "Call-ID: fast-1", "Call-ID: other", 1),
		"foreign target":            strings.Replace(r.inDialog("BYE", "z9hG4bK-f", ""), "BYE sip:bob@"+callee, "BYE sip:bob@127.0.0.9:5", 1),
		"route elsewhere":           strings.Replace(r.inDialog("BYE", "z9hG4bK-r", ""), "Route: ", "Route: <sip:127.0.0.9:5;lr>, ", 1),
		"not our Route":             strings.Replace(r.inDialog("BYE", "z9hG4bK-n", ""), "Route: ", "Route: <sip:127.0.0.9:5;lr>,", 1),
		"INVITE":                    r.inDialog("INVITE", "z9hG4bK-re", ""),
		"CANCEL":                    r.inDialog("CANCEL", "z9hG4bK-ca", ""),
		"ACK of a failed re-INVITE": r.inDialog("ACK", "z9hG4bK-f1", ""),
		"CSeq method mismatch":      strings.Replace(r.inDialog("BYE", "z9hG4bK-cs", ""), "CSeq: 2 BYE", "CSeq: 2 INFO", 1),
		"SIP/3.0":                   strings.Replace(r.inDialog("BYE", "z9hG4bK-v", ""), "SIP/2.0\r\n", "SIP/3.0\r\n", 1),
		"Max-Breadth 0 (440)":       r.inDialog("BYE", "z9hG4bK-mb", "Max-Breadth: 0\r\n"),
		"garbage":                   "BYE \x00\x01 nothing",
		"a response of sipgo's":     "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ps.abcdefghijklmnop.abcdefghij\r\nContent-Length: 0\r\n\r\n",
	}
	for name, m := range cases {
		if r.s.fastPath([]byte(m), callerAddr) {
			t.Errorf("%s: handled on the stateless path", name)
		}
		if w := r.conn.take(); len(w) != 0 {
			t.Errorf("%s: wrote %q", name, w[0].data)
		}
	}
	// The same BYE, valid: forwarded (the cases above failed for their
	// own reason).
	if !r.s.fastPath([]byte(r.inDialog("BYE", "z9hG4bK-ok", "Max-Forwards: 70\r\n")), callerAddr) || len(r.conn.take()) != 1 {
		t.Fatal("valid BYE not forwarded")
	}
	// A target that is ourselves: never forwarded there.
	own := strings.Replace(r.inDialog("BYE", "z9hG4bK-s", ""), "BYE sip:bob@"+callee, "BYE sip:bob@localhost:5060", 1)
	r.s.dialogs.m[keyOf(r.callID, "a1", "b1")].hops["localhost:5060"] = true
	if r.s.fastPath([]byte(own), callerAddr) || len(r.conn.take()) != 0 {
		t.Fatal("forwarded to ourselves")
	}
}

// FuzzProxyFastPath: whatever arrives, the stateless path neither
// crashes nor writes anywhere but to a peer (never to ourselves), and
// what it writes parses.
func FuzzProxyFastPath(f *testing.F) {
	r := newFastRig(f)
	f.Add([]byte(r.inDialog("BYE", "z9hG4bK-b1", "Max-Forwards: 70\r\n")))
	f.Add([]byte(r.inDialog("ACK", "z9hG4bK-a1", "")))
	f.Add([]byte(r.inDialog("MESSAGE", "z9hG4bK-m1", "Max-Forwards: 1\r\n")))
	r.s.fastPath([]byte(r.inDialog("BYE", "z9hG4bK-b1", "Max-Forwards: 70\r\n")), callerAddr)
	fwd := parse(f, r.conn.take()[0].data).(*sip.Request)
	f.Add([]byte(sip.NewResponseFromRequest(fwd, 200, "OK", nil).String()))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ps.abcdefghijklmnop.~abc\r\nVia: SIP/2.0/UDP 1.2.3.4;rport=99999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r.s.fastPath(data, callerAddr)
		for _, w := range r.conn.take() {
			if w.to == netip.MustParseAddrPort("127.0.0.1:5060") || !w.to.Addr().IsValid() {
				t.Fatalf("wrote to %v", w.to)
			}
			if _, err := sip.ParseMessage(w.data); err != nil {
				t.Fatalf("wrote what does not parse: %v %q", err, w.data)
			}
		}
	})
}

// TestDialogHopsFromRecordRouteList: a Record-Route list in one header
// (sipgo makes one header per address) gives the dialog every hop but
// ours.
func TestDialogHopsFromRecordRouteList(t *testing.T) {
	r := newFastRig(t)
	inv := r.parseReq(t, "INVITE sip:bob@"+fpDomain+" SIP/2.0\r\nVia: SIP/2.0/UDP "+caller+";branch=z9hG4bK-i2\r\nFrom: <sip:alice@"+fpDomain+">;tag=a2\r\n"+
		"To: <sip:bob@"+fpDomain+">\r\nCall-ID: rr-list\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@"+caller+">\r\nContent-Length: 0\r\n\r\n")
	res := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	res.To().Params.Add("tag", "b2")
	m := strings.Replace(res.String(), "Content-Length:", "Record-Route: <sip:10.0.0.1:5070;lr>, "+r.rr+", <sip:10.0.0.2;lr>\r\nContent-Length:", 1)
	res = parse(t, []byte(m)).(*sip.Response)
	if n := len(res.GetHeaders("Record-Route")); n != 3 {
		t.Fatalf("%d Record-Route headers", n)
	}
	ours := func(u sip.Uri) bool { _, ok := u.UriParams.Get("ps"); return ok }
	if !r.s.dialogs.established(inv, res, ours, r.s.now()) {
		t.Fatal("not established")
	}
	hops := r.s.dialogs.m[keyOf("rr-list", "a2", "b2")].hops
	if !hops["10.0.0.1:5070"] || !hops["10.0.0.2:5060"] || hops["127.0.0.1:5060"] || !hops[caller] {
		t.Fatalf("hops %v", hops)
	}
}

// TestFastPathOverLongCountedOnce: an in-dialog request too long for UDP
// is left to sipgo's path without spending the source's request rate
// there (sipgo's path counts it): a source with one request of burst
// left still gets its next request forwarded.
func TestFastPathOverLongCountedOnce(t *testing.T) {
	r := newFastRig(t)
	r.s.reqLimit = newSourceLimiter(0.001, 1, 10)
	long := r.inDialog("INFO", "z9hG4bK-long", "X-Pad: "+strings.Repeat("a", 1400)+"\r\n")
	if r.s.fastPath([]byte(long), callerAddr) || len(r.conn.take()) != 0 {
		t.Fatal("an over-long request went out over UDP")
	}
	if !r.s.fastPath([]byte(r.inDialog("BYE", "z9hG4bK-after", "")), callerAddr) || len(r.conn.take()) != 1 {
		t.Fatal("the next request was refused: the over-long one spent the source's rate")
	}
	// The rate does apply: the burst is spent now.
	if r.s.fastPath([]byte(r.inDialog("BYE", "z9hG4bK-again", "")), callerAddr) {
		t.Fatal("a request past the source's rate was forwarded")
	}
}
