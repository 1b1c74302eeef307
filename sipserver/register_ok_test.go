package sipserver

import (
	"regexp"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRegisterOKAsSipgo: the stateless path's 200 is, byte for byte,
// what sip.NewResponseFromRequest makes (the To tag aside: random in
// both, of one shape), and the request is left as it was.
func TestRegisterOKAsSipgo(t *testing.T) {
	base := "REGISTER sip:paysip.test SIP/2.0\r\n" +
		"VIA\r\n" +
		"From: \"Al\" <sip:al@paysip.test>;tag=abc\r\n" +
		"TO\r\n" +
		"Call-ID: c1@h\r\nCSeq: 7 REGISTER\r\nContact: <sip:al@192.0.2.1:5070>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
	tag := regexp.MustCompile(`tag=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)
	for _, c := range []struct{ via, to string }{
		{"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-1", "To: <sip:al@paysip.test>"},
		{"Via: SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bK-1", "To: \"Al\" <sip:al@paysip.test;x=y>;p=q"},
		{"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-1;rport\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-0;rport", "To: <sip:al@paysip.test>;tag=already"},
		{"v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-1, SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bK-2", "t: <sip:al@paysip.test>"},
	} {
		raw := strings.Replace(strings.Replace(base, "VIA", c.via, 1), "TO", c.to, 1)
		msg, err := sip.NewParser().ParseSIP([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource("192.0.2.1:40000")
		req.SetTransport("UDP")
		before := req.String()
		ours, theirs := registerOK(req).String(), sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil).String()
		if req.String() != before {
			t.Fatalf("request changed:\n%s\n%s", before, req.String())
		}
		if strings.Contains(c.to, "tag=") != !tag.MatchString(ours) {
			t.Fatalf("tag of %q: %s", c.to, ours)
		}
		if strings.Contains(c.via, ";rport") != (strings.Contains(ours, "rport=40000") && strings.Contains(ours, "received=192.0.2.1")) || strings.Count(ours, "z9hG4bK-") != strings.Count(raw, "z9hG4bK-") {
			t.Fatalf("Via of %q: %s", c.via, ours)
		}
		if a, b := tag.ReplaceAllString(ours, "tag=T"), tag.ReplaceAllString(theirs, "tag=T"); a != b {
			t.Fatalf("ours:\n%s\nsipgo's:\n%s", a, b)
		}
	}
}
