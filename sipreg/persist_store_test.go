package sipreg_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/internal/pgtest"
	"github.com/paysip/paysip/sipreg"
	"github.com/paysip/paysip/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// dbStore is sipreg.Store on package store; markedDBStore is the same
// with the feed that leaves out the node's own rows (sipreg.MarkedFeed),
// as cmd/paysip wires it.
type dbStore struct {
	db     *store.DB
	writer string
}

type markedDBStore struct{ dbStore }

func (s markedDBStore) BindingsChangedSinceMark(ctx context.Context, since time.Time) ([]sipreg.Record, time.Time, error) {
	bs, mark, err := s.db.BindingsChangedSinceExcept(ctx, since, s.writer)
	rs, err := recs(bs, err)
	return rs, mark, err
}

func (s dbStore) PutBindings(ctx context.Context, recs []sipreg.Record) error {
	bs := make([]store.StoredBinding, len(recs))
	for i, r := range recs { // Updated zero: stamped by the store
		bs[i] = store.StoredBinding{AOR: r.AOR, Key: r.Key, Expires: r.Expires, Data: r.Data, Writer: s.writer}
	}
	return s.db.PutBindings(ctx, bs)
}

func recs(bs []store.StoredBinding, err error) ([]sipreg.Record, error) {
	out := make([]sipreg.Record, len(bs))
	for i, b := range bs {
		out[i] = sipreg.Record{AOR: b.AOR, Key: b.Key, Expires: b.Expires, Data: b.Data, Updated: b.Updated}
	}
	return out, err
}

func (s dbStore) Bindings(ctx context.Context, aor string, now time.Time) ([]sipreg.Record, error) {
	return recs(s.db.Bindings(ctx, aor, now))
}
func (s dbStore) AllBindings(ctx context.Context, now time.Time) ([]sipreg.Record, error) {
	return recs(s.db.AllBindings(ctx, now))
}
func (s dbStore) BindingsChangedSince(ctx context.Context, since time.Time) ([]sipreg.Record, error) {
	return recs(s.db.BindingsChangedSince(ctx, since))
}
func (s dbStore) ReclaimBindings(ctx context.Context, now time.Time) (int, error) {
	return s.db.ReclaimBindings(ctx, now)
}

var backends = map[string]func(testing.TB) string{
	"sqlite":   func(t testing.TB) string { return filepath.Join(t.TempDir(), "paysip.db") },
	"postgres": pgtest.DSN,
}

func openDB(t testing.TB, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var nodes int

type regNode struct {
	reg *sipreg.Registry
	p   *sipreg.Persister
}

// startNode is a registry on its own handle of the store, running its
// persister until the test ends; marked: with the feed of MarkedFeed.
func startNode(t testing.TB, dsn string, marked ...bool) regNode {
	t.Helper()
	r := sipreg.New(sipreg.Limits{})
	nodes++
	var st sipreg.Store = dbStore{openDB(t, dsn), fmt.Sprint("node", nodes)}
	if len(marked) > 0 && marked[0] {
		st = markedDBStore{st.(dbStore)}
	}
	p := r.Persist(sipreg.PersistConfig{Store: st})
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return regNode{r, p}
}

func registerAt(t testing.TB, r *sipreg.Registry, user string, cseq uint32) {
	t.Helper()
	var c sip.ContactHeader
	sip.ParseAddressValue("<sip:"+user+"@192.0.2.7:5060;transport=tcp>;+paysip.price=60000", &c.Address, &c.Params)
	_, err := r.Apply(sipreg.Request{AOR: "sip:" + user + "@example.org", Owner: user, CallID: "c-" + user, CSeq: cseq,
		Contacts: []*sip.ContactHeader{&c}, Path: []string{"<sip:10.0.0.5;lr;received=sip:192.0.2.7:40000>"}, Source: "10.0.0.5:5060", Transport: "TCP"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// TestPersistRealStore: two registries on one store (two handles, as two
// nodes would have; SQLite is one node's file, Postgres many nodes'), run
// as serve runs them: a registration on one is seen by the other (miss
// and feed), an un-registration too, and a node started later loads it.
func TestPersistRealStore(t *testing.T) {
	for name, fresh := range backends {
		for _, marked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/marked=%v", name, marked), func(t *testing.T) { testPersistRealStore(t, fresh, marked) })
		}
	}
}

func testPersistRealStore(t *testing.T, fresh func(testing.TB) string, marked bool) {
	dsn := fresh(t)
	a, b := startNode(t, dsn, marked), startNode(t, dsn, marked)
	registerAt(t, a.reg, "tutor", 1)
	waitFor(t, "B sees A's registration", func() bool { return len(b.reg.Lookup("sip:tutor@example.org", time.Now())) == 1 })
	registerAt(t, a.reg, "expert", 1)
	b.reg.Lookup("sip:expert@example.org", time.Now()) // a miss before A's batch is written...
	waitFor(t, "the feed brings it", func() bool { return b.reg.AORs() == 2 })
	got := b.reg.Lookup("sip:expert@example.org", time.Now())
	if len(got) != 1 || got[0].Path[0] != "<sip:10.0.0.5;lr;received=sip:192.0.2.7:40000>" || got[0].Source != "10.0.0.5:5060" {
		t.Fatalf("B holds %+v", got)
	}
	// Un-registration on B reaches A.
	var c sip.ContactHeader
	sip.ParseAddressValue("<sip:tutor@192.0.2.7:5060;transport=tcp>;expires=0", &c.Address, &c.Params)
	if _, err := b.reg.Apply(sipreg.Request{AOR: "sip:tutor@example.org", Owner: "tutor", CallID: "c-tutor", CSeq: 2,
		Contacts: []*sip.ContactHeader{&c}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A sees the removal", func() bool { return len(a.reg.Lookup("sip:tutor@example.org", time.Now())) == 0 })
	if err := b.p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	later := startNode(t, dsn, marked)
	if later.reg.AORs() != 1 || len(later.reg.Lookup("sip:expert@example.org", time.Now())) != 1 {
		t.Fatalf("a node started later holds %d addresses", later.reg.AORs())
	}
}

// BenchmarkSharedRegistration measures how long a registration taken by
// one node takes to be routable on another (same store, each node its own
// handle, default periods: write-behind 20 ms, feed 250 ms), the other
// node looking it up every 5 ms: "miss" is an address the other node
// never saw (read-through), "feed" a new contact at an address it holds
// already (the change feed alone).
//
//	go test ./sipreg -run X -bench SharedRegistration -benchtime 50x
func BenchmarkSharedRegistration(b *testing.B) {
	for name, fresh := range backends {
		for _, mode := range []string{"miss", "feed"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				dsn := fresh(b)
				a, other := startNode(b, dsn), startNode(b, dsn)
				var total time.Duration
				for i := 0; i < b.N; i++ {
					user := "u" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
					aor := "sip:" + user + "@example.org"
					if mode == "feed" {
						registerAt(b, a.reg, user, 1)
						waitFor(b, "first contact", func() bool { return len(other.reg.Lookup(aor, time.Now())) == 1 })
					}
					// A random phase against the nodes' tickers, as a
					// registration arriving from outside would have.
					time.Sleep(time.Duration(rand.Int64N(int64(300 * time.Millisecond))))
					start := time.Now()
					var c sip.ContactHeader
					sip.ParseAddressValue("<sip:"+user+"@192.0.2.9:5060>", &c.Address, &c.Params)
					if _, err := a.reg.Apply(sipreg.Request{AOR: aor, Owner: user, CallID: "x-" + user, CSeq: 1, Contacts: []*sip.ContactHeader{&c}}, time.Now()); err != nil {
						b.Fatal(err)
					}
					want := 1
					if mode == "feed" {
						want = 2
					}
					waitFor(b, "visible", func() bool { return len(other.reg.Lookup(aor, time.Now())) == want })
					total += time.Since(start)
				}
				b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/visible")
			})
		}
	}
}
