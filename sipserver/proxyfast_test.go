package sipserver_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
)

// TestStatelessInDialogOverUDP: a call through a running server, raw UDP
// peers on both sides. The ACK and the BYE follow the Record-Route on the
// stateless path (proxyfast.go): our Via's branch is computed (RFC 3261
// section 16.11), so the BYE's retransmission reaches the callee with
// the same branch; the BYE's 200 comes back without our Via and ends the
// dialog.
func TestStatelessInDialogOverUDP(t *testing.T) {
	r := startServer(t, nil)
	callee := newPeer(t, "127.0.0.1", r.proxy())
	cseq := 0
	if res, _ := callee.register("bob", "sl-reg", &cseq, []string{"<sip:bob@" + callee.addr + ">"}); res == nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}
	caller := newPeer(t, "127.0.0.1", r.proxy())
	caller.sendTo(r.proxy(), caller.msg("INVITE", "sip:bob@"+domain, "v=0\r\n", "To: <sip:bob@"+domain+">", "From: <sip:c@"+domain+">;tag=c1",
		"Call-ID: sl-call", "CSeq: 1 INVITE", "Contact: <sip:c@"+caller.addr+">", "Supported: paysip", "Content-Type: application/sdp"))
	inv := callee.nextRequest(sip.INVITE, "sl-call", 5*time.Second)
	if inv == nil {
		t.Fatal("no INVITE forwarded")
	}
	ok := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	ok.To().Params.Add("tag", "b1")
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: callee.conn.LocalAddr().(*net.UDPAddr).Port}})
	callee.sendTo(r.proxy(), ok.String())
	res := caller.finalOf("sl-call", 5*time.Second)
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("caller got %v", res)
	}
	dialogs := sipserver.DialogCount(r.srv)
	route := "Route: " + strings.TrimSpace(res.GetHeader("Record-Route").Value())
	ruri := "sip:bob@" + callee.addr
	common := []string{"To: <sip:bob@" + domain + ">;tag=b1", "From: <sip:c@" + domain + ">;tag=c1", "Call-ID: sl-call", route}
	caller.sendTo(r.proxy(), caller.msg("ACK", ruri, "", append(common, "CSeq: 1 ACK")...))
	ack := callee.nextRequest(sip.ACK, "sl-call", 5*time.Second)
	if ack == nil {
		t.Fatal("no ACK forwarded")
	}
	stateless := func(req *sip.Request) string {
		t.Helper()
		b, _ := req.Via().Params.Get("branch")
		if !strings.HasPrefix(b, "z9hG4bK-ps.") || !strings.Contains(b, ".~") || req.GetHeader("Route") != nil || req.MaxForwards().Val() != 69 {
			t.Fatalf("not forwarded statelessly as it should: %s", req)
		}
		return b
	}
	stateless(ack)
	bye := caller.msg("BYE", ruri, "", append(common, "CSeq: 2 BYE")...)
	got := callee.got.Load()
	caller.sendTo(r.proxy(), bye)
	fwd := callee.nextRequest(sip.BYE, "sl-call", 5*time.Second)
	if fwd == nil {
		t.Fatal("no BYE forwarded")
	}
	stateless(fwd)
	// The retransmission: the same branch (the peer counts it, but does
	// not queue a branch it has seen).
	caller.sendTo(r.proxy(), bye)
	deadline := time.Now().Add(5 * time.Second)
	for callee.got.Load() < got+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := callee.got.Load() - got; n != 2 {
		t.Fatalf("callee got %d BYEs", n)
	}
	if callee.nextRequest(sip.BYE, "sl-call", 200*time.Millisecond) != nil {
		t.Fatal("the retransmission got another branch")
	}
	callee.sendTo(r.proxy(), sip.NewResponseFromRequest(fwd, 200, "OK", nil).String())
	res = caller.finalOf("sl-call", 5*time.Second)
	if res == nil || res.StatusCode != 200 || res.CSeq().MethodName != sip.BYE || len(res.GetHeaders("Via")) != 1 {
		t.Fatalf("BYE's answer: %v", res)
	}
	for deadline := time.Now().Add(2 * time.Second); sipserver.DialogCount(r.srv) >= dialogs && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if sipserver.DialogCount(r.srv) >= dialogs {
		t.Fatal("the BYE's 200 did not end the dialog")
	}
	alive(t, r)
}
