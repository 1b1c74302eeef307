package sipserver_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paysip/paysip/sipserver"
)

// TestUDPRegisterRetransmission: REGISTERs over UDP are answered without
// a transaction (fastpath.go); a retransmission (same Call-ID and CSeq)
// (same Call-ID, CSeq and branch) is answered 200 with the bindings it
// made; a reused or older CSeq is still refused, a newer one applies.
func TestUDPRegisterRetransmission(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Open = true })
	p := newUDPPeer(t, r.srv)
	reg := register(p.port, 7, "")
	for i := 0; i < 2; i++ {
		p.send(reg)
		if m := p.recv(); !strings.HasPrefix(m, "SIP/2.0 200 ") || !strings.Contains(m, "expires=300") {
			t.Fatalf("REGISTER %d: %q", i, m)
		}
	}
	if n := r.srv.Registry().Count(); n != 1 {
		t.Fatalf("%d bindings after a retransmission", n)
	}
	// A new request (its own branch) reusing the CSeq is not a
	// retransmission.
	p.send(strings.Replace(reg, ";branch=z9hG4bK-r", ";branch=z9hG4bK-x", 1))
	if m := p.recv(); !strings.HasPrefix(m, "SIP/2.0 500 ") {
		t.Fatalf("reused CSeq: %q", m)
	}
	p.send(strings.Replace(reg, "CSeq: 1 ", "CSeq: 0 ", 1))
	if m := p.recv(); !strings.HasPrefix(m, "SIP/2.0 500 ") {
		t.Fatalf("older CSeq: %q", m)
	}
	p.send(strings.Replace(strings.Replace(reg, "CSeq: 1 ", "CSeq: 2 ", 1), "Expires: 300", "Expires: 0", 1))
	if m := p.recv(); !strings.HasPrefix(m, "SIP/2.0 200 ") || strings.Contains(m, "Contact:") {
		t.Fatalf("un-REGISTER: %q", m)
	}
	if n := r.srv.Registry().Count(); n != 0 {
		t.Fatalf("%d bindings after un-registering", n)
	}
}

// TestUDPRegisteredContactReached: a contact registered over UDP (on the
// fast path, never seen by sipgo's transport) is reached from the
// server's SIP port, the flow it registered on.
func TestUDPRegisteredContactReached(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Open = true })
	p := newUDPPeer(t, r.srv)
	p.send(register(p.port, 3, ""))
	if m := p.recv(); !strings.HasPrefix(m, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER: %q", m)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := r.ua("caller", false).Message(ctx, uri("sip:user3@"+domain), "text/plain", []byte("hi"))
		if err == nil && res.StatusCode != 200 {
			err = &net.AddrError{Err: res.StartLine()}
		}
		done <- err
	}()
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := p.conn.ReadFromUDP(p.buf)
	if err != nil {
		t.Fatal(err)
	}
	m := p.buf[:n]
	if !strings.HasPrefix(string(m), "MESSAGE ") || from.Port != r.srv.SIPPort() {
		t.Fatalf("got %q from %v (server port %d)", m, from, r.srv.SIPPort())
	}
	p.conn.WriteToUDP(answer(m, "200 OK", ""), from)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// gatedAccounts holds every store query until the gate opens, as a
// store across a slow network would.
type gatedAccounts struct {
	inner   sipserver.Accounts
	entered chan string
	gate    chan struct{}
}

func (a *gatedAccounts) UserHA1(ctx context.Context, name, realm, alg string) (string, bool) {
	a.entered <- name
	select {
	case <-a.gate:
	case <-time.After(20 * time.Second):
	}
	return a.inner.UserHA1(ctx, name, realm, alg)
}

// TestUDPRegisterStoreMissOffReader: a REGISTER whose credentials need a
// store query (an HA1 not cached) is not checked in the socket's reader:
// while the store takes its time, other datagrams are still answered.
func TestUDPRegisterStoreMissOffReader(t *testing.T) {
	acc := &gatedAccounts{entered: make(chan string, 16), gate: make(chan struct{})}
	r := startServer(t, func(c *sipserver.Config) { acc.inner = c.Accounts; c.Accounts = acc })
	defer func() {
		select {
		case <-acc.gate:
		default:
			close(acc.gate)
		}
	}()
	alice := newPeer(t, "127.0.0.1", r.proxy())
	cseq := 0
	build := func(auth string) string {
		cseq++
		return alice.msg("REGISTER", "sip:"+domain, "", "To: <sip:alice@"+domain+">", "From: <sip:alice@"+domain+">;tag=g1",
			"Call-ID: gated-1", "CSeq: "+strconv.Itoa(cseq)+" REGISTER", "Contact: <sip:alice@"+alice.addr+">", "Expires: 300", auth)
	}
	res := alice.exchange(build(""))
	if res == nil || res.StatusCode != 401 {
		t.Fatalf("first REGISTER: %v", res)
	}
	auth := digestAnswer(t, res.GetHeader("WWW-Authenticate").Value(), "REGISTER", "sip:"+domain, "alice")
	alice.sendTo(r.proxy(), build("Authorization: "+auth))
	select {
	case name := <-acc.entered:
		if name != "alice" {
			t.Fatalf("store asked for %q", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the store was never asked")
	}
	// The store is stuck on alice: another client is answered anyway.
	bob := newPeer(t, "127.0.0.1", r.proxy())
	res = bob.exchange(bob.msg("REGISTER", "sip:"+domain, "", "To: <sip:bob@"+domain+">", "From: <sip:bob@"+domain+">;tag=g2",
		"Call-ID: gated-2", "CSeq: 1 REGISTER", "Contact: <sip:bob@"+bob.addr+">", "Expires: 300"))
	if res == nil || res.StatusCode != 401 {
		t.Fatalf("REGISTER while the store is busy: %v (the reader waits on the store)", res)
	}
	close(acc.gate)
	if res := alice.final(5 * time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("alice's REGISTER: %v", res)
	}
	// Now cached: the next one is answered on the fast path, no query.
	res, _ = alice.authed(build, "alice", "REGISTER", "sip:"+domain, "Authorization", "WWW-Authenticate")
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("cached REGISTER: %v", res)
	}
	select {
	case name := <-acc.entered:
		t.Fatalf("store asked again for %q", name)
	default:
	}
}
