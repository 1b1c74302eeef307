package sipserver_test

import (
	"context"
	"net"
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
