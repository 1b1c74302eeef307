package sipreg

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// memStore is a Store in memory with Contract C's rules as package store
// implements them: an upsert replaces, Updated is the store's clock, the
// feed returns expired rows too. The real backends are checked by
// TestPersistRealStore and by internal/clustertest through paysip serve.
type memStore struct {
	mu    sync.Mutex
	rows  map[[2]string]Record
	stamp time.Time // the store's clock
	fail  error
	reads int
}

func newMemStore() *memStore {
	return &memStore{rows: map[[2]string]Record{}, stamp: time.Unix(1_700_000_000, 0)}
}

func (m *memStore) PutBindings(_ context.Context, recs []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, r := range recs {
		m.stamp = m.stamp.Add(time.Microsecond)
		r.Updated = m.stamp
		m.rows[[2]string{r.AOR, r.Key}] = r
	}
	return nil
}

func (m *memStore) list(keep func(Record) bool) []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	var out []Record
	for _, r := range m.rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Updated.Before(out[j].Updated) })
	return out
}

func (m *memStore) Bindings(_ context.Context, aor string, now time.Time) ([]Record, error) {
	return m.list(func(r Record) bool { return r.AOR == aor && r.Expires.After(now) }), nil
}

func (m *memStore) AllBindings(_ context.Context, now time.Time) ([]Record, error) {
	return m.list(func(r Record) bool { return r.Expires.After(now) }), nil
}

func (m *memStore) BindingsChangedSince(_ context.Context, since time.Time) ([]Record, error) {
	return m.list(func(r Record) bool { return r.Updated.After(since) }), nil
}

func (m *memStore) ReclaimBindings(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, r := range m.rows {
		if !r.Expires.After(now) {
			delete(m.rows, k)
			n++
		}
	}
	return n, nil
}

// clock is a settable clock shared by the nodes of a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func node(st Store, c *clock) (*Registry, *Persister) {
	r := New(Limits{})
	return r, r.Persist(PersistConfig{Store: st, Now: c.Now})
}

func register(t *testing.T, r *Registry, now time.Time, owner, cseq string, contacts ...string) {
	t.Helper()
	req := Request{AOR: "sip:tutor@example.org", Owner: owner, CallID: "call-" + owner, Source: "192.0.2.7:5060", Transport: "TCP",
		Path: []string{"<sip:10.0.0.5:5060;transport=tcp;lr;received=sip:192.0.2.7:40112%3Btransport%3Dtcp>"}}
	for _, c := range contacts {
		req.Contacts = append(req.Contacts, contact(t, c))
	}
	var n uint32
	for _, ch := range cseq {
		n = n*10 + uint32(ch-'0')
	}
	req.CSeq = n
	if _, err := r.Apply(req, now); err != nil {
		t.Fatal(err)
	}
}

// TestPersistSharedBindings: a registration taken by node A reaches node
// B by read-through (a miss) and by the change feed (an address B already
// knows); a removal reaches B as a tombstone; a restarted node loads
// every binding with what routing needs (Path, flow, parameters).
func TestPersistSharedBindings(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	a, pa := node(st, c)
	b, pb := node(st, c)
	aor := "sip:tutor@example.org"

	register(t, a, c.Now(), "tutor", "1", `<sip:tutor@192.0.2.7:40112;transport=tcp>;+sip.instance="<urn:uuid:1>";reg-id=1;+paysip.price=60000`)
	if st.Pending(t) != 0 || pa.Pending() != 1 {
		t.Fatalf("write-behind: store %d, pending %d", st.Pending(t), pa.Pending())
	}
	if err := pa.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Read-through: B has never seen the address.
	got := b.Lookup(aor, c.Now())
	if len(got) != 1 {
		t.Fatalf("B after a miss: %d bindings", len(got))
	}
	want := a.Lookup(aor, c.Now())[0]
	if got[0].Contact.Value() != want.Contact.Value() || !reflect.DeepEqual(got[0].Path, want.Path) || got[0].Source != want.Source ||
		got[0].Transport != want.Transport || got[0].Owner != "tutor" || !got[0].Expires.Equal(want.Expires) || got[0].Key != want.Key {
		t.Fatalf("B holds %+v, A %+v", got[0], want)
	}
	if v, _ := got[0].Param("+paysip.price"); v != "60000" {
		t.Fatalf("price parameter lost: %q", v)
	}
	// A second contact at an address B knows: the feed brings it.
	c.Add(time.Second)
	register(t, a, c.Now(), "tutor", "2", `<sip:tutor@192.0.2.7:40112;transport=tcp>;+sip.instance="<urn:uuid:1>";reg-id=1;+paysip.price=60000`,
		`<sip:tutor@192.0.2.8:5060>`)
	pa.Flush(ctx)
	if n := len(b.Lookup(aor, c.Now())); n != 1 {
		t.Fatalf("B before polling: %d", n)
	}
	if n, err := pb.Poll(ctx); err != nil || n != 2 {
		t.Fatalf("poll: %d changes, %v (the refresh and the new contact)", n, err)
	}
	if n := len(b.Lookup(aor, c.Now())); n != 2 {
		t.Fatalf("B after polling: %d", n)
	}
	// Polling again reads the overlap again but changes nothing.
	if n, _ := pb.Poll(ctx); n != 0 {
		t.Fatalf("second poll changed %d", n)
	}
	// B takes the un-registration of one contact: A learns it.
	c.Add(time.Second)
	register(t, b, c.Now(), "tutor", "3", `<sip:tutor@192.0.2.8:5060>;expires=0`)
	pb.Flush(ctx)
	if n, _ := pa.Poll(ctx); n != 1 {
		t.Fatalf("A polled %d changes after the removal", n)
	}
	if bs := a.Lookup(aor, c.Now()); len(bs) != 1 || bs[0].Contact.Address.Host != "192.0.2.7" {
		t.Fatalf("A after the removal: %+v", bs)
	}
	// A restarted node (a new registry on the same store) routes to the
	// remaining contact without a new REGISTER.
	c2, _ := node(st, c)
	if err := c2.sync.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if bs := c2.Lookup(aor, c.Now()); len(bs) != 1 || bs[0].Path[0] != want.Path[0] || bs[0].Source != "192.0.2.7:40112" && bs[0].Source != want.Source {
		t.Fatalf("restarted node: %+v", bs)
	}
	// Its CSeq ordering survives too: a replayed older REGISTER is refused.
	old := Request{AOR: aor, Owner: "tutor", CallID: "call-tutor", CSeq: 2,
		Contacts: []*sip.ContactHeader{contact(t, `<sip:tutor@192.0.2.9:5060>;+sip.instance="<urn:uuid:1>";reg-id=1`)}}
	if _, err := c2.Apply(old, c.Now()); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("old CSeq after restart: %v", err)
	}
	// Tombstones and expired rows are reclaimed from the store.
	c.Add(2 * time.Hour)
	if n, _ := st.ReclaimBindings(ctx, c.Now()); n != 2 {
		t.Fatalf("reclaimed %d rows, want the binding and the tombstone", n)
	}
}

func (m *memStore) Pending(t *testing.T) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}

// TestPersistLatestWins: a batch written late by one node does not undo
// a newer refresh, or a removal, of the same binding taken by another:
// the registries keep the newer, and the store converges on it.
func TestPersistLatestWins(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	a, pa := node(st, c)
	b, pb := node(st, c)
	register(t, a, c.Now(), "tutor", "1", `<sip:tutor@192.0.2.7:5060>;expires=600`)
	c.Add(time.Second)
	register(t, b, c.Now(), "tutor", "2", `<sip:tutor@192.0.2.7:5060>;expires=3600`)
	pb.Flush(ctx)
	pa.Flush(ctx) // late: the store holds the older version
	pa.Poll(ctx)
	pb.Poll(ctx) // B sees the older version: writes its own again
	pb.Flush(ctx)
	pa.Poll(ctx)
	for _, r := range []*Registry{a, b} {
		if bs := r.Lookup("sip:tutor@example.org", c.Now()); len(bs) != 1 || bs[0].CSeq != 2 {
			t.Fatalf("registry holds %+v", bs)
		}
	}
	recs, _ := st.AllBindings(ctx, c.Now())
	if len(recs) != 1 || !recs[0].Expires.Equal(c.Now().Add(time.Hour)) {
		t.Fatalf("store kept %+v", recs)
	}
	// A removal on B, then a late refresh written by A: the binding stays
	// removed everywhere.
	c.Add(time.Second)
	register(t, a, c.Now().Add(-time.Millisecond), "tutor", "3", `<sip:tutor@192.0.2.7:5060>;expires=3600`)
	register(t, b, c.Now(), "tutor", "4", `<sip:tutor@192.0.2.7:5060>;expires=0`)
	pb.Flush(ctx)
	pa.Flush(ctx)
	for i := 0; i < 2; i++ {
		pa.Poll(ctx)
		pb.Poll(ctx)
		pa.Flush(ctx)
		pb.Flush(ctx)
	}
	for name, r := range map[string]*Registry{"A": a, "B": b} {
		if bs := r.Lookup("sip:tutor@example.org", c.Now()); len(bs) != 0 {
			t.Fatalf("%s resurrected %+v", name, bs)
		}
	}
	fresh, _ := node(st, c)
	fresh.sync.Load(ctx)
	if bs := fresh.Lookup("sip:tutor@example.org", c.Now()); len(bs) != 0 {
		t.Fatalf("a new node loads %+v", bs)
	}
}

// TestPersistStoreDown: changes wait while the store fails and are
// written when it is back; the queue is bounded.
func TestPersistStoreDown(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	r := New(Limits{})
	p := r.Persist(PersistConfig{Store: st, Now: c.Now, MaxPending: 2})
	st.fail = errors.New("connection refused")
	register(t, r, c.Now(), "tutor", "1", `<sip:tutor@192.0.2.7:5060>`)
	if err := p.Flush(ctx); err == nil || p.Pending() != 1 {
		t.Fatalf("flush with the store down: %v, pending %d", err, p.Pending())
	}
	register(t, r, c.Now(), "tutor", "2", `<sip:tutor@192.0.2.7:5060>`, `<sip:tutor@192.0.2.8:5060>`, `<sip:tutor@192.0.2.9:5060>`)
	if p.Pending() != 2 {
		t.Fatalf("pending %d over its bound", p.Pending())
	}
	st.fail = nil
	if err := p.Flush(ctx); err != nil || st.Pending(t) != 2 {
		t.Fatalf("flush after recovery: %v, %d rows", err, st.Pending(t))
	}
}

// TestPersistReadThroughBounded: misses for unknown addresses ask the
// store at most once per address and poll period.
func TestPersistReadThroughBounded(t *testing.T) {
	st := newMemStore()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	r, _ := node(st, c)
	for i := 0; i < 5; i++ {
		r.Lookup("sip:nobody@example.org", c.Now())
	}
	if st.reads != 1 {
		t.Fatalf("%d store reads for 5 misses of one address", st.reads)
	}
	c.Add(time.Second)
	r.Lookup("sip:nobody@example.org", c.Now())
	if st.reads != 2 {
		t.Fatalf("%d store reads after a flush period", st.reads)
	}
}

// TestStoredBindingRefused: records that are not this package's
// bindings are refused, not half-read.
func TestStoredBindingRefused(t *testing.T) {
	good, err := encodeBinding(&Binding{AOR: "sip:a@example.org", Contact: contact(t, "<sip:a@192.0.2.1>"), Key: "uri:sip:a@192.0.2.1:0", Owner: "a"}, false, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := decodeBinding(good); err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]Record{
		"not json":      {AOR: good.AOR, Key: good.Key, Data: []byte("{")},
		"other version": {AOR: good.AOR, Key: good.Key, Data: []byte(`{"v":2}`)},
		"other key":     {AOR: good.AOR, Key: `"b" ` + "uri:sip:a@192.0.2.1:0", Data: good.Data},
		"wildcard":      {AOR: good.AOR, Key: `"" x`, Data: []byte(`{"v":1,"contact":"*","key":"x"}`)},
		"bad aor":       {AOR: "tel:1", Key: good.Key, Data: good.Data},
	} {
		if _, _, err := decodeBinding(rec); !errors.Is(err, errStored) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzStoredBinding(f *testing.F) {
	good, _ := encodeBinding(&Binding{AOR: "sip:a@example.org", Contact: &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "a", Host: "192.0.2.1"}},
		Key: "k", Owner: "a", Path: []string{"<sip:edge;lr>"}}, false, time.Unix(1, 0), time.Minute)
	f.Add(good.AOR, good.Key, good.Data)
	old := jsonRecord(f, &Binding{AOR: "sip:a@example.org", Contact: &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "a", Host: "192.0.2.1"}},
		Key: "k", Owner: "a", Path: []string{"<sip:edge;lr>"}}, true, time.Unix(1, 0), time.Minute)
	f.Add(old.AOR, old.Key, old.Data) // JSON, as paysip wrote before format 2
	f.Add("sip:a@b", `"" k`, []byte(`{"v":1,"contact":"<sip:a@b;x=\"y\">;q=0.5","key":"k"}`))
	f.Fuzz(func(t *testing.T, aor, key string, data []byte) {
		b, removed, err := decodeBinding(Record{AOR: aor, Key: key, Data: data})
		if err != nil {
			return
		}
		// What decodes encodes back to a binding of the same identity
		// (sipgo's printing of odd URI parameters is not a fixed point,
		// so the contact text itself may differ).
		rec, err := encodeBinding(b, removed, b.Updated, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b2, _, err := decodeBinding(rec)
		if err != nil {
			t.Fatalf("re-encoded binding refused: %v", err)
		}
		if b2.Key != b.Key || b2.Owner != b.Owner || b2.AOR != b.AOR || b2.Contact.Address.Host != b.Contact.Address.Host {
			t.Fatalf("round trip: %+v -> %+v", b, b2)
		}
	})
}

// feedCount counts the records the change feed reads.
type feedCount struct {
	*memStore
	read int
}

func (f *feedCount) BindingsChangedSince(ctx context.Context, since time.Time) ([]Record, error) {
	recs, err := f.memStore.BindingsChangedSince(ctx, since)
	f.read += len(recs)
	return recs, err
}

// TestPersistFeedReadsOnlyRecent: a node's change feed moves past its own
// writes too. It moved only past other nodes' records, so a registrar
// alone read back, at every poll, every binding it had written since it
// started (at 10,000 new bindings a second, 38% of its CPU).
func TestPersistFeedReadsOnlyRecent(t *testing.T) {
	ctx := context.Background()
	st := &feedCount{memStore: newMemStore()}
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	r, p := node(st, c)
	var last int
	for i := range 8 {
		st.mu.Lock()
		st.stamp = c.Now() // the store's clock agrees with the node's
		st.mu.Unlock()
		register(t, r, c.Now(), "tutor", fmt.Sprint(i+1), fmt.Sprintf("<sip:tutor@192.0.2.%d:5060>", i+1))
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		c.Add(5 * time.Second) // well past the feed's overlap (1 s)
		before := st.read
		if _, err := p.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		last = st.read - before
	}
	if last > 2 {
		t.Fatalf("the 8th poll read %d records: the feed reads back every binding this node wrote", last)
	}
}

// markedFeed is a store whose feed leaves out one node's writes and says
// how far it read (MarkedFeed), as package store's does.
type markedFeed struct {
	*feedCount
	own map[[2]string]bool // rows this node wrote last
}

func (m *markedFeed) PutBindings(ctx context.Context, recs []Record) error {
	for _, r := range recs {
		m.own[[2]string{r.AOR, r.Key}] = true
	}
	return m.memStore.PutBindings(ctx, recs)
}

func (m *markedFeed) BindingsChangedSinceMark(ctx context.Context, since time.Time) ([]Record, time.Time, error) {
	all, err := m.memStore.BindingsChangedSince(ctx, since)
	var out []Record
	var mark time.Time
	for _, r := range all {
		m.read++ // scanned, returned or not
		if r.Updated.After(mark) {
			mark = r.Updated
		}
		if !m.own[[2]string{r.AOR, r.Key}] {
			out = append(out, r)
		}
	}
	return out, mark, err
}

// TestPersistMarkedFeedAdvances: a feed that hides this node's own rows
// still advances past them on its mark: a lone node scans only the recent
// rows at each poll, not every row it wrote since it started.
func TestPersistMarkedFeedAdvances(t *testing.T) {
	ctx := context.Background()
	st := &markedFeed{feedCount: &feedCount{memStore: newMemStore()}, own: map[[2]string]bool{}}
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	r, p := node(st, c)
	var last int
	for i := range 8 {
		st.mu.Lock()
		st.stamp = c.Now()
		st.mu.Unlock()
		register(t, r, c.Now(), "tutor", fmt.Sprint(i+1), fmt.Sprintf("<sip:tutor@192.0.2.%d:5060>", i+1))
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		c.Add(5 * time.Second)
		before := st.read
		if _, err := p.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		last = st.read - before
	}
	if last > 2 {
		t.Fatalf("the 8th poll scanned %d rows: the feed does not advance past its own rows", last)
	}
	if len(p.written) != 0 {
		t.Fatalf("%d own writes remembered: the marked feed never returns them", len(p.written))
	}
}
