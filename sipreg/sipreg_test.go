package sipreg

import (
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func contact(t *testing.T, s string) *sip.ContactHeader {
	t.Helper()
	var c sip.ContactHeader
	if _, err := sip.ParseAddressValue(s, &c.Address, &c.Params); err != nil {
		t.Fatal(err)
	}
	return &c
}

func u32(v uint32) *uint32 { return &v }

func TestRegistrar(t *testing.T) {
	r := New()
	t0 := time.Unix(1_800_000_000, 0)
	aor := "sip:alice@example.org"
	req := Request{AOR: aor, CallID: "c1", CSeq: 1, Source: "127.0.0.1:5070", Transport: "TCP",
		Contacts: []*sip.ContactHeader{
			contact(t, `<sip:alice@127.0.0.1:5070;transport=tcp>;expires=120`),
			contact(t, `<sip:alice@df7jal23ls0d.invalid;transport=ws>;+sip.instance="<urn:uuid:f81d4fae>";reg-id=1;+paysip.price=60000`),
		},
		Path: []string{"<sip:edge.example.org;lr>"}}
	bs, err := r.Apply(req, t0)
	if err != nil || len(bs) != 2 {
		t.Fatalf("%v %v", bs, err)
	}
	// Parameters are kept as registered (minus expires), Path too.
	var ws Binding
	for _, b := range bs {
		if b.Contact.Address.Host == "df7jal23ls0d.invalid" {
			ws = b
		}
	}
	if v, _ := ws.Param("+sip.instance"); v != "<urn:uuid:f81d4fae>" || ws.Path[0] != "<sip:edge.example.org;lr>" {
		t.Fatalf("binding %+v", ws)
	}
	if v, ok := ws.Param("+paysip.price"); !ok || v != "60000" {
		t.Fatalf("price param %q", v)
	}
	// Expiry: the 120 s contact is gone after 121 s, the other stays.
	if got := r.Lookup(aor, t0.Add(121*time.Second)); len(got) != 1 {
		t.Fatalf("after 121 s: %d bindings", len(got))
	}
	// Refresh with a higher CSeq; the same CSeq on the same Call-ID is refused.
	req.CSeq = 2
	req.Contacts = req.Contacts[1:]
	if _, err := r.Apply(req, t0.Add(200*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(req, t0.Add(201*time.Second)); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("replayed CSeq: %v", err)
	}
	// The same instance from another URI replaces its binding.
	req.CSeq = 3
	req.Contacts = []*sip.ContactHeader{contact(t, `<sip:alice@other.invalid;transport=ws>;+sip.instance="<urn:uuid:f81d4fae>";reg-id=1`)}
	bs, _ = r.Apply(req, t0.Add(210*time.Second))
	if len(bs) != 1 || bs[0].Contact.Address.Host != "other.invalid" {
		t.Fatalf("instance replacement: %+v", bs)
	}
	// FindContact locates the flow of a registered contact.
	if b, ok := r.FindContact(bs[0].Contact.Address, t0.Add(211*time.Second)); !ok || b.Source != "127.0.0.1:5070" {
		t.Fatalf("FindContact %+v %v", b, ok)
	}
	// Too brief.
	req.CSeq = 4
	req.Contacts = []*sip.ContactHeader{contact(t, `<sip:alice@127.0.0.1:5071>;expires=10`)}
	var brief *IntervalTooBriefError
	if _, err := r.Apply(req, t0.Add(220*time.Second)); !errors.As(err, &brief) || brief.Min != MinExpires {
		t.Fatalf("too brief: %v", err)
	}
	// Query: no contacts returns the bindings unchanged.
	if bs, err := r.Apply(Request{AOR: aor, CallID: "q", CSeq: 1}, t0.Add(221*time.Second)); err != nil || len(bs) != 1 {
		t.Fatalf("query: %v %v", bs, err)
	}
	// Un-register one contact with expires=0.
	req.CSeq = 5
	req.Contacts = []*sip.ContactHeader{contact(t, `<sip:alice@other.invalid;transport=ws>;+sip.instance="<urn:uuid:f81d4fae>";reg-id=1;expires=0`)}
	if bs, _ := r.Apply(req, t0.Add(230*time.Second)); len(bs) != 0 {
		t.Fatalf("after un-register: %+v", bs)
	}
	// Wildcard rules.
	if _, err := r.Apply(Request{AOR: aor, Wildcard: true, CallID: "w", CSeq: 1}, t0); !errors.Is(err, ErrWildcard) {
		t.Fatalf("wildcard without Expires: 0: %v", err)
	}
	r.Apply(Request{AOR: aor, CallID: "x", CSeq: 1, Contacts: []*sip.ContactHeader{contact(t, "<sip:alice@127.0.0.1:5080>")}}, t0)
	if _, err := r.Apply(Request{AOR: aor, Wildcard: true, Expires: u32(0), CallID: "w", CSeq: 1}, t0); err != nil || r.Count() != 0 {
		t.Fatalf("wildcard: %v, %d left", err, r.Count())
	}
}
