package sipserver

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipreg"
)

// Proxy logic without sockets: targets, Path, terms, option tags, CANCEL.

func binding(t *testing.T, contact string, path ...string) sipreg.Binding {
	var c sip.ContactHeader
	if _, err := sip.ParseAddressValue(contact, &c.Address, &c.Params); err != nil {
		t.Fatal(err)
	}
	return sipreg.Binding{Contact: &c, Source: "127.0.0.1:40000", Transport: "WS", Path: path, Expires: time.Now().Add(time.Hour)}
}

func TestBindingTarget(t *testing.T) {
	// Direct: the flow the REGISTER came on.
	tg := bindingTarget(binding(t, "<sip:bob@x.invalid;transport=ws>"))
	if tg.dest != "127.0.0.1:40000" || tg.transport != "WS" || tg.uri.Host != "x.invalid" {
		t.Fatalf("%+v", tg)
	}
	// Behind an edge proxy: the Path's first hop (RFC 3327).
	tg = bindingTarget(binding(t, "<sip:bob@x.invalid;transport=ws>", "<sip:127.0.0.1:5062;transport=tcp;lr;received=sip:127.0.0.1:5555>"))
	if tg.dest != "127.0.0.1:5062" || tg.transport != "TCP" || len(tg.path) != 1 {
		t.Fatalf("%+v", tg)
	}
}

func TestPricedTermsAndOptionTag(t *testing.T) {
	b := binding(t, `<sip:tutor@1.2.3.4>;+paysip.price=60000;+paysip.key=02ab;+paysip.min-deposit=100000`)
	terms, ok := pricedTerms([]sipreg.Binding{binding(t, "<sip:x@y>"), b})
	if !ok || terms != "version=1;price-sat-per-min=60000;min-deposit-sat=100000;payee-key=02ab;transports=datachannel,message" {
		t.Fatalf("%q %v", terms, ok)
	}
	if _, ok := pricedTerms([]sipreg.Binding{binding(t, "<sip:x@y>")}); ok {
		t.Fatal("unpriced binding has terms")
	}
	req := sip.NewRequest(sip.INVITE, sip.Uri{})
	req.AppendHeader(sip.NewHeader("Supported", "timer, Paysip ,100rel"))
	if !supportsPaysip(req) {
		t.Fatal("option tag not found")
	}
	if supportsPaysip(sip.NewRequest(sip.INVITE, sip.Uri{})) {
		t.Fatal("no option tag, yet supported")
	}
}

func TestCancelFor(t *testing.T) {
	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5070})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TCP", Host: "127.0.0.1", Port: 5060, Params: sip.NewParams()}
	via.Params.Add("branch", "z9hG4bK.abc")
	inv.AppendHeader(via)
	inv.AppendHeader(&sip.RouteHeader{Address: sip.Uri{Host: "edge", Port: 5062}})
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{User: "a", Host: "d"}, Params: sip.HeaderParams{{K: "tag", V: "1"}}})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{User: "b", Host: "d"}})
	cid := sip.CallIDHeader("c1")
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.INVITE})
	c := cancelFor(inv)
	if c.Method != sip.CANCEL || c.CSeq().SeqNo != 7 || c.CSeq().MethodName != sip.CANCEL || c.Recipient.String() != inv.Recipient.String() {
		t.Fatalf("%s", c)
	}
	if b, _ := c.Via().Params.Get("branch"); b != "z9hG4bK.abc" || c.Route() == nil || c.CallID().Value() != "c1" {
		t.Fatalf("CANCEL does not match its INVITE: %s", c)
	}
}

func TestRecordRouteToken(t *testing.T) {
	s, err := New(Config{Domain: "d.test", Open: true, SIPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s.sipPort, s.httpPort = 5060, 8080
	rr := s.recordRoute("ws", "call-1").(*sip.RecordRouteHeader)
	if !strings.Contains(rr.Value(), "transport=ws") || rr.Address.Port != 8080 {
		t.Fatalf("%s", rr.Value())
	}
	req := sip.NewRequest(sip.BYE, sip.Uri{User: "x", Host: "y"})
	cid := sip.CallIDHeader("call-1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.RouteHeader{Address: rr.Address})
	if !s.popOurRoutes(req) || req.Route() != nil {
		t.Fatal("our own Record-Route not recognised")
	}
	// The same route on another dialog does not prove anything.
	other := sip.NewRequest(sip.BYE, sip.Uri{User: "x", Host: "y"})
	cid2 := sip.CallIDHeader("call-2")
	other.AppendHeader(&cid2)
	other.AppendHeader(&sip.RouteHeader{Address: rr.Address})
	if s.popOurRoutes(other) {
		t.Fatal("a route token accepted for another Call-ID")
	}
}
