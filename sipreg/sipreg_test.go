package sipreg

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func contact(t testing.TB, s string) *sip.ContactHeader {
	t.Helper()
	var c sip.ContactHeader
	if _, err := sip.ParseAddressValue(s, &c.Address, &c.Params); err != nil {
		t.Fatal(err)
	}
	return &c
}

func u32(v uint32) *uint32 { return &v }

func TestRegistrar(t *testing.T) {
	r := New(Limits{})
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
	if b, ok := r.FindContactIn(bs[0].Contact.Address, []string{aor}, t0.Add(211*time.Second)); !ok || b.Source != "127.0.0.1:5070" {
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

// TestOwners: one address shared by many accounts (the directory). A
// wildcard removes only the requester's bindings; the same contact URI
// registered by two accounts makes two bindings, neither replacing the
// other (issue 10, finding 3).
func TestOwners(t *testing.T) {
	r := New(Limits{})
	t0 := time.Unix(1_800_000_000, 0)
	dir := "sip:directory@example.org"
	listing := func(owner, callID string) Request {
		return Request{AOR: dir, Owner: owner, CallID: callID, CSeq: 1, Expires: u32(300),
			Contacts: []*sip.ContactHeader{contact(t, `<sip:tutor@192.0.2.1:5070>;+paysip.aor="sip:`+owner+`@example.org"`)}}
	}
	if _, err := r.Apply(listing("tutor", "t1"), t0); err != nil {
		t.Fatal(err)
	}
	// mallory registers the tutor's contact URI: her own binding, the
	// tutor's listing stays as it was.
	bs, err := r.Apply(listing("mallory", "m1"), t0)
	if err != nil || len(bs) != 1 || bs[0].Owner != "mallory" {
		t.Fatalf("mallory's listing: %+v %v", bs, err)
	}
	all := r.Lookup(dir, t0)
	if len(all) != 2 {
		t.Fatalf("%d listings, want 2", len(all))
	}
	// mallory's wildcard removes hers only.
	if _, err := r.Apply(Request{AOR: dir, Owner: "mallory", Wildcard: true, Expires: u32(0), CallID: "m2", CSeq: 1}, t0); err != nil {
		t.Fatal(err)
	}
	all = r.Lookup(dir, t0)
	if len(all) != 1 || all[0].Owner != "tutor" {
		t.Fatalf("after mallory's wildcard: %+v", all)
	}
	// Nor can she remove the tutor's by naming it with expires=0.
	rm := listing("mallory", "m3")
	rm.Expires = u32(0)
	r.Apply(rm, t0)
	if all = r.Lookup(dir, t0); len(all) != 1 {
		t.Fatalf("mallory removed the tutor's listing: %+v", all)
	}
	// FindContact searches only the addresses named.
	if _, ok := r.FindContactIn(all[0].Contact.Address, []string{"sip:mallory@example.org"}, t0); ok {
		t.Fatal("a contact found under an address that does not hold it")
	}
}

// TestLimits: contacts per owner and address, and bindings in total.
func TestLimits(t *testing.T) {
	r := New(Limits{MaxContacts: 3, MaxBindings: 5})
	t0 := time.Unix(1_800_000_000, 0)
	reg := func(aor string, seq uint32, hosts ...string) error {
		req := Request{AOR: aor, Owner: "o", CallID: "c-" + aor, CSeq: seq, Expires: u32(300)}
		for _, h := range hosts {
			req.Contacts = append(req.Contacts, contact(t, "<sip:x@"+h+">"))
		}
		_, err := r.Apply(req, t0)
		return err
	}
	if err := reg("sip:a@d", 1, "h1", "h2", "h3"); err != nil {
		t.Fatal(err)
	}
	if err := reg("sip:a@d", 2, "h4"); !errors.Is(err, ErrTooManyContacts) {
		t.Fatalf("4th contact: %v", err)
	}
	// Refreshing an existing contact is not a new one.
	if err := reg("sip:a@d", 3, "h1", "h2"); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if err := reg("sip:b@d", 1, "h1", "h2"); err != nil {
		t.Fatal(err)
	}
	if err := reg("sip:c@d", 1, "h1"); !errors.Is(err, ErrFull) {
		t.Fatalf("6th binding: %v", err)
	}
	if r.Count() != 5 {
		t.Fatalf("count %d", r.Count())
	}
	// Once they expire and are swept, there is room again.
	if n := r.Sweep(t0.Add(301 * time.Second)); n != 5 || r.Count() != 0 || r.AORs() != 0 {
		t.Fatalf("swept %d, %d left in %d AORs", n, r.Count(), r.AORs())
	}
}

// TestSweepReclaims: 50,000 addresses with the shortest expiry; once
// expired, Sweep empties the registry (no lookup needed) and the heap
// comes back down (issue 10, finding 7: 27 -> 198 MB, and it stayed at
// 208 MB after expiry).
func TestSweepReclaims(t *testing.T) {
	const n = 50_000
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	base := heap()
	r := New(Limits{})
	t0 := time.Unix(1_800_000_000, 0)
	for i := range n {
		aor := fmt.Sprintf("sip:user%d@example.org", i)
		c := contact(t, fmt.Sprintf(`<sip:user%d@192.0.2.%d:%d;transport=tcp>;+sip.instance="<urn:uuid:%08d>";reg-id=1`, i, i%250, 1024+i%60000, i))
		if _, err := r.Apply(Request{AOR: aor, Owner: fmt.Sprint("user", i), CallID: fmt.Sprint("c", i), CSeq: 1, Expires: u32(MinExpires),
			Contacts: []*sip.ContactHeader{c}, Source: "192.0.2.1:5060", Transport: "TCP"}, t0); err != nil {
			t.Fatal(err)
		}
	}
	full := heap()
	if r.Count() != n || r.AORs() != n {
		t.Fatalf("%d bindings in %d AORs", r.Count(), r.AORs())
	}
	// Before expiry nothing goes.
	if got := r.Sweep(t0.Add(30 * time.Second)); got != 0 {
		t.Fatalf("swept %d live bindings", got)
	}
	if got := r.Sweep(t0.Add((MinExpires + 1) * time.Second)); got != n || r.Count() != 0 || r.AORs() != 0 {
		t.Fatalf("swept %d, %d bindings in %d AORs left", got, r.Count(), r.AORs())
	}
	after := heap()
	t.Logf("heap in use: %d KB before, %d KB with %d bindings, %d KB after the sweep", base>>10, full>>10, n, after>>10)
	// Bound: what the registry held comes back to within 10% of itself
	// (plus 2 MB of slack for the runtime).
	grown := full - base
	if after > base+grown/10+2<<20 {
		t.Fatalf("heap not reclaimed: %d KB before, %d KB full, %d KB after", base>>10, full>>10, after>>10)
	}
	runtime.KeepAlive(r)
}

// BenchmarkSweep: a sweep of 100,000 live bindings (nothing to remove),
// the work the server's ticker does every 30 s.
func BenchmarkSweep(b *testing.B) {
	r := New(Limits{MaxBindings: 200_000})
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 100_000 {
		var c sip.ContactHeader
		sip.ParseAddressValue(fmt.Sprintf("<sip:u%d@192.0.2.1:%d>", i, 1024+i%60000), &c.Address, &c.Params)
		r.Apply(Request{AOR: fmt.Sprint("sip:u", i, "@d"), CallID: "c", CSeq: 1, Expires: u32(3600), Contacts: []*sip.ContactHeader{&c}}, t0)
	}
	b.ResetTimer()
	for b.Loop() {
		r.Sweep(t0)
	}
}
