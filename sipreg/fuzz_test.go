package sipreg

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// FuzzApplyContacts: a REGISTER whose Contact headers (the directory's
// +paysip.* parameters among them) and Expires come from outside, parsed
// by sipgo as the server does, then applied. Properties: no panic; a
// refusal is one of Apply's documented errors and changes nothing; an
// accepted one leaves bindings that are the AOR's, unique by key, at most
// one per contact sent, expiring within MaxExpires, their parameters read
// back unquoted and without expires; the same REGISTER again with a
// higher CSeq changes no count (a refresh, not a duplicate); a wildcard
// removal empties the AOR.
func FuzzApplyContacts(f *testing.F) {
	f.Add(`<sip:tutor@127.0.0.1:5070;transport=tcp>;+paysip.price=60000;+paysip.aor="sip:tutor@paysip.test";+paysip.name="Tutor"`, "", "300")
	f.Add(`<sip:a@h>;+sip.instance="<urn:uuid:1>";reg-id=1`, `<sip:a@h2>;expires=0`, "3600")
	f.Add(`"Bob" <sip:bob@[::1]:5060>;expires=59`, `<sip:b@h>;expires=4294967295`, "")
	f.Add(`*`, ``, "0")
	f.Add(`<sip:x@h>;+paysip.price="-1";+paysip.key=02ab`, `<sip:x@h>;+paysip.price=1`, "70")
	f.Fuzz(func(t *testing.T, c1, c2, expires string) {
		var hdrs strings.Builder
		n := 0
		for _, c := range []string{c1, c2} {
			if c == "" || strings.ContainsAny(c, "\r\n") {
				continue
			}
			fmt.Fprintf(&hdrs, "Contact: %s\r\n", c)
			n++
		}
		if expires != "" && !strings.ContainsAny(expires, "\r\n") {
			fmt.Fprintf(&hdrs, "Expires: %s\r\n", expires)
		}
		msg := "REGISTER sip:paysip.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
			"From: <sip:tutor@paysip.test>;tag=1\r\nTo: <sip:tutor@paysip.test>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n" +
			hdrs.String() + "Content-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			return // sipgo refuses it before the registrar sees it
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		r := Request{AOR: "sip:tutor@paysip.test", Owner: "tutor", CallID: "c1", CSeq: 1, Source: "127.0.0.1:5070", Transport: "UDP"}
		for _, h := range req.GetHeaders("Contact") {
			c, ok := h.(*sip.ContactHeader)
			if !ok {
				return // the server answers 400
			}
			if c.Address.Wildcard {
				r.Wildcard = true
				continue
			}
			r.Contacts = append(r.Contacts, c)
		}
		if e := req.GetHeader("Expires"); e != nil {
			var v uint32
			if _, err := fmt.Sscan(strings.TrimSpace(e.Value()), &v); err != nil {
				return // the server answers 400
			}
			r.Expires = &v
		}
		reg := New(Limits{})
		now := time.Unix(1_800_000_000, 0)
		bs, err := reg.Apply(r, now)
		if err != nil {
			var brief *IntervalTooBriefError
			if !errors.Is(err, ErrWildcard) && !errors.Is(err, ErrOutOfOrder) && !errors.Is(err, ErrTooManyContacts) && !errors.Is(err, ErrFull) && !errors.As(err, &brief) {
				t.Fatalf("undocumented refusal %v", err)
			}
			if reg.Count() != 0 {
				t.Fatalf("a refused REGISTER left %d bindings", reg.Count())
			}
			return
		}
		if len(bs) > len(r.Contacts) {
			t.Fatalf("%d bindings from %d contacts", len(bs), len(r.Contacts))
		}
		keys := map[string]bool{}
		for _, b := range bs {
			if b.AOR != r.AOR || keys[b.Key] || !b.Expires.After(now) || b.Expires.After(now.Add(MaxExpires*time.Second)) {
				t.Fatalf("binding %+v", b)
			}
			keys[b.Key] = true
			if _, ok := b.Param("expires"); ok {
				t.Fatal("expires parameter kept in the binding")
			}
			for _, name := range []string{"+paysip.price", "+paysip.aor", "+paysip.name", "+paysip.key"} {
				if v, ok := b.Param(name); ok && (strings.HasPrefix(v, `"`) || strings.HasSuffix(v, `"`)) {
					t.Fatalf("%s read back quoted: %q", name, v)
				}
			}
		}
		if got := len(reg.Lookup(r.AOR, now)); got != len(bs) {
			t.Fatalf("Lookup %d, Apply %d", got, len(bs))
		}
		r.CSeq = 2
		again, err := reg.Apply(r, now.Add(time.Second))
		if err != nil || len(again) != len(bs) {
			t.Fatalf("refresh: %d bindings (%v), first %d", len(again), err, len(bs))
		}
		zero := uint32(0)
		if _, err := reg.Apply(Request{AOR: r.AOR, Owner: r.Owner, Wildcard: true, Expires: &zero, CallID: "c1", CSeq: 3}, now.Add(2*time.Second)); err != nil {
			t.Fatalf("wildcard removal: %v", err)
		}
		if reg.Count() != 0 {
			t.Fatalf("%d bindings after Contact: *", reg.Count())
		}
	})
}
