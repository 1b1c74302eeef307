package sipserver

import (
	"context"
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
	s := &Server{host: "127.0.0.1", sipPort: 5060}
	tg := s.bindingTarget(binding(t, "<sip:bob@x.invalid;transport=ws>"))
	if tg.dest != "127.0.0.1:40000" || tg.transport != "WS" || tg.uri.Host != "x.invalid" {
		t.Fatalf("%+v", tg)
	}
	// Behind an edge proxy: the Path's first hop (RFC 3327).
	tg = s.bindingTarget(binding(t, "<sip:bob@x.invalid;transport=ws>", "<sip:127.0.0.1:5062;transport=tcp;lr;received=sip:127.0.0.1:5555>"))
	if tg.dest != "127.0.0.1:5062" || tg.transport != "TCP" || len(tg.path) != 1 {
		t.Fatalf("%+v", tg)
	}
	// A Path entry naming this proxy is skipped: we are already here.
	tg = s.bindingTarget(binding(t, "<sip:bob@x.invalid;transport=ws>", "<sip:127.0.0.1:5060;lr>", "<sip:127.0.0.1:5062;transport=tcp;lr>"))
	if tg.dest != "127.0.0.1:5062" || len(tg.path) != 1 {
		t.Fatalf("own Path entry kept: %+v", tg)
	}
}

func TestPricedTermsAndOptionTag(t *testing.T) {
	key := "02" + strings.Repeat("ab", 32)
	b := binding(t, `<sip:tutor@1.2.3.4>;+paysip.price=60000;+paysip.key=`+key+`;+paysip.min-deposit=100000`)
	terms, ok := pricedTerms([]sipreg.Binding{binding(t, "<sip:x@y>"), b})
	if !ok || terms != "version=1;price-sat-per-min=60000;min-deposit-sat=100000;payee-key="+key+";transports=datachannel,message" {
		t.Fatalf("%q %v", terms, ok)
	}
	// Parameters that do not parse are not quoted to callers.
	for _, bad := range []string{"+paysip.price=-5", "+paysip.price=6e4", "+paysip.price=60000;+paysip.key=zz", "+paysip.price=60000;+paysip.min-deposit=x"} {
		if terms, ok := pricedTerms([]sipreg.Binding{binding(t, "<sip:tutor@1.2.3.4>;"+bad)}); ok {
			t.Fatalf("%s: quoted %q", bad, terms)
		}
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
	s, err := New(Config{Domain: "d.test", SIPAddr: "127.0.0.1:0", Accounts: noAccounts{}})
	if err != nil {
		t.Fatal(err)
	}
	s.sipPort, s.httpPort = 5060, 8080
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	inv := dialogRequest(sip.INVITE, "call-1", "sip:caller@d.test", "a1", "sip:tutor@d.test", "")
	tok := s.rrToken(inv, now)
	rr := s.recordRoute("ws", tok).(*sip.RecordRouteHeader)
	if !strings.Contains(rr.Value(), "transport=ws") || rr.Address.Port != 8080 {
		t.Fatalf("%s", rr.Value())
	}
	route := func(req *sip.Request) *sip.Request {
		req.PrependHeader(&sip.RouteHeader{Address: rr.Address})
		return req
	}
	// Both directions of the dialog.
	for _, req := range []*sip.Request{
		dialogRequest(sip.BYE, "call-1", "sip:caller@d.test", "a1", "sip:tutor@d.test", "b2"),
		dialogRequest(sip.BYE, "call-1", "sip:tutor@d.test", "b2", "sip:caller@d.test", "a1"),
	} {
		if seen, valid := s.popOurRoutes(route(req)); !seen || !valid || req.Route() != nil {
			t.Fatalf("our own Record-Route not recognised: %v %v", seen, valid)
		}
	}
	// Another Call-ID, another caller tag, another end, or too late: not
	// this dialog's token.
	for name, req := range map[string]*sip.Request{
		"call-id": dialogRequest(sip.BYE, "call-2", "sip:caller@d.test", "a1", "sip:tutor@d.test", "b2"),
		"tag":     dialogRequest(sip.BYE, "call-1", "sip:caller@d.test", "zz", "sip:tutor@d.test", "b2"),
		"end":     dialogRequest(sip.BYE, "call-1", "sip:caller@d.test", "a1", "sip:victim@foreign.example", "b2"),
	} {
		if seen, valid := s.popOurRoutes(route(req)); !seen || valid {
			t.Fatalf("%s: a token accepted for another dialog", name)
		}
	}
	now = now.Add(maxDialogLifetime + time.Second)
	if _, valid := s.popOurRoutes(route(dialogRequest(sip.BYE, "call-1", "sip:caller@d.test", "a1", "sip:tutor@d.test", "b2"))); valid {
		t.Fatal("an expired token accepted")
	}
}

type noAccounts struct{}

func (noAccounts) UserHA1(context.Context, string, string, string) (string, bool) { return "", false }

func dialogRequest(m sip.RequestMethod, callID, from, fromTag, to, toTag string) *sip.Request {
	var fu, tu sip.Uri
	sip.ParseUri(from, &fu)
	sip.ParseUri(to, &tu)
	req := sip.NewRequest(m, tu)
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	f := &sip.FromHeader{Address: fu, Params: sip.NewParams()}
	f.Params.Add("tag", fromTag)
	req.AppendHeader(f)
	tt := &sip.ToHeader{Address: tu, Params: sip.NewParams()}
	if toTag != "" {
		tt.Params.Add("tag", toTag)
	}
	req.AppendHeader(tt)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: m})
	return req
}

func TestForwardedMaxForwards(t *testing.T) {
	for _, tc := range []struct {
		hdr  string
		want uint32
		ok   bool
	}{{"", 70, true}, {"0", 0, false}, {"1", 0, true}, {"5", 4, true}, {"4294967295", 70, true}} {
		req := sip.NewRequest(sip.MESSAGE, sip.Uri{User: "x", Host: "y"})
		if tc.hdr != "" {
			req.AppendHeader(sip.NewHeader("Max-Forwards", tc.hdr))
		}
		if got, ok := forwardedMaxForwards(req); got != tc.want || ok != tc.ok {
			t.Errorf("Max-Forwards %q: %d %v, want %d %v", tc.hdr, got, ok, tc.want, tc.ok)
		}
	}
}

// TestDialogTable: bounded; an early dialog ends with its request's
// failure; a confirmed one allows only its own next hops.
func TestDialogTable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := newDialogs(2)
	ours := func(sip.Uri) bool { return false }
	answer := func(req *sip.Request, code int, tag string) *sip.Response {
		res := sip.NewResponseFromRequest(req, code, "x", nil)
		res.To().Params.Add("tag", tag)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "b", Host: "192.0.2.2", Port: 5070}})
		return res
	}
	invite := func(callID string) *sip.Request {
		req := dialogRequest(sip.INVITE, callID, "sip:a@d.test", "a1", "sip:b@d.test", "")
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "a", Host: "192.0.2.1", Port: 5060}})
		return req
	}
	inv := invite("c1")
	if !d.established(inv, answer(inv, 200, "b1"), ours, now) {
		t.Fatal("not recorded")
	}
	bye := dialogRequest(sip.BYE, "c1", "sip:b@d.test", "b1", "sip:a@d.test", "a1")
	if !d.allows(bye, "192.0.2.1:5060", now) || d.allows(bye, "192.0.2.99:5060", now) {
		t.Fatal("next hops of the dialog wrong")
	}
	// Early, then failed: gone.
	inv2 := invite("c2")
	d.established(inv2, answer(inv2, 180, "b2"), ours, now)
	d.failed(inv2, answer(inv2, 486, "b2"))
	if d.len() != 1 {
		t.Fatalf("%d dialogs after a failed call", d.len())
	}
	// Full: a third dialog is not recorded until one expires.
	inv3, inv4 := invite("c3"), invite("c4")
	d.established(inv3, answer(inv3, 200, "b3"), ours, now)
	if d.established(inv4, answer(inv4, 200, "b4"), ours, now) || d.len() != 2 {
		t.Fatalf("table over its bound: %d", d.len())
	}
	if !d.established(inv4, answer(inv4, 200, "b4"), ours, now.Add(maxDialogLifetime)) || d.len() != 1 {
		t.Fatalf("expired dialogs not reclaimed: %d", d.len())
	}
	if d.allows(bye, "192.0.2.1:5060", now.Add(maxDialogLifetime)) {
		t.Fatal("an expired dialog still allows requests")
	}
}

// FuzzRouteToken: any token, Max-Breadth or Max-Forwards value a peer
// sends is refused or read, never a panic, and no token is accepted
// without the server's secret.
func FuzzRouteToken(f *testing.F) {
	s, err := New(Config{Domain: "d.test", SIPAddr: "127.0.0.1:0", Accounts: noAccounts{}})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	inv := dialogRequest(sip.INVITE, "c", "sip:a@d.test", "a1", "sip:b@d.test", "")
	f.Add(s.rrToken(inv, now), "60", "70")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "-1", "0")
	f.Add("", "x", "99999999999")
	other, _ := New(Config{Domain: "d.test", SIPAddr: "127.0.0.1:0", Accounts: noAccounts{}})
	f.Fuzz(func(t *testing.T, tok, breadth, forwards string) {
		req := dialogRequest(sip.BYE, "c", "sip:a@d.test", "a1", "sip:b@d.test", "b1")
		req.AppendHeader(sip.NewHeader("Max-Breadth", breadth))
		req.AppendHeader(sip.NewHeader("Max-Forwards", forwards))
		// other never made a token (and has its own secret): it accepts
		// none, not even s's.
		if other.checkToken(tok, req, now) {
			t.Fatalf("token %q accepted by a server that did not make it", tok)
		}
		s.checkToken(tok, req, now)
		if b := maxBreadth(req); b < 0 || b > defaultMaxBreadth {
			t.Fatalf("Max-Breadth %q read as %d", breadth, b)
		}
		if mf, ok := forwardedMaxForwards(req); ok && mf > maxForwardsCap {
			t.Fatalf("Max-Forwards %q forwarded as %d", forwards, mf)
		}
	})
}
