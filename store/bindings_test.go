package store

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestBindings: upsert by (AOR, key), only unexpired bindings read back,
// deletions and expiries reclaimed, changes followed with deletions
// included; on every backend, surviving a reopen.
func TestBindings(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, dsn := b.open(t)
		now := time.Now().Truncate(time.Microsecond)
		start := now.Add(-time.Second)
		put := func(aor, key string, ttl time.Duration, data string) {
			t.Helper()
			if err := d.PutBinding(ctx, StoredBinding{AOR: aor, Key: key, Expires: now.Add(ttl), Data: []byte(data)}); err != nil {
				t.Fatal(err)
			}
		}
		put("sip:tutor@paysip.test", "c1", time.Hour, `{"contact":"a"}`)
		put("sip:tutor@paysip.test", "c2", time.Minute, `{"contact":"b"}`)
		put("sip:other@paysip.test", "c1", -time.Second, `{"contact":"gone"}`) // already expired
		put("sip:empty@paysip.test", "c1", time.Hour, "")

		got, err := d.Bindings(ctx, "sip:tutor@paysip.test", now)
		if err != nil || len(got) != 2 || got[0].Key != "c1" || string(got[1].Data) != `{"contact":"b"}` ||
			!got[0].Expires.Equal(now.Add(time.Hour)) || got[0].Updated.Before(start) {
			t.Fatalf("bindings of tutor: %+v %v", got, err)
		}
		// Upsert: the same key replaces, not adds.
		put("sip:tutor@paysip.test", "c2", 2*time.Hour, `{"contact":"b2"}`)
		got, _ = d.Bindings(ctx, "sip:tutor@paysip.test", now.Add(90*time.Minute))
		if len(got) != 1 || got[0].Key != "c2" || string(got[0].Data) != `{"contact":"b2"}` {
			t.Fatalf("after upsert, at +90 min: %+v", got)
		}
		all, err := d.AllBindings(ctx, now)
		if err != nil || len(all) != 3 || all[0].AOR != "sip:empty@paysip.test" || all[0].Data == nil || all[0].Deleted() {
			t.Fatalf("all: %+v %v", all, err)
		}
		if got, _ := d.Bindings(ctx, "sip:other@paysip.test", now); len(got) != 0 {
			t.Fatalf("expired binding read back: %+v", got)
		}

		// Changes: everything written since start, then the deletion.
		ch, err := d.BindingsChangedSince(ctx, start)
		if err != nil || len(ch) != 4 {
			t.Fatalf("changed since start: %d %v", len(ch), err)
		}
		mark := ch[len(ch)-1].Updated
		for i := 1; i < len(ch); i++ {
			if ch[i].Updated.Before(ch[i-1].Updated) {
				t.Fatalf("changes out of order: %+v", ch)
			}
		}
		if err := d.DeleteBinding(ctx, "sip:tutor@paysip.test", "c1"); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteBinding(ctx, "sip:tutor@paysip.test", "nonesuch"); err != nil {
			t.Fatalf("deleting an absent binding: %v", err)
		}
		ch, err = d.BindingsChangedSince(ctx, mark)
		if err != nil || len(ch) != 1 || ch[0].Key != "c1" || !ch[0].Deleted() || ch[0].Expires.After(ch[0].Updated) {
			t.Fatalf("changes after the deletion: %+v %v", ch, err)
		}
		if got, _ := d.Bindings(ctx, "sip:tutor@paysip.test", now); len(got) != 1 || got[0].Key != "c2" {
			t.Fatalf("deleted binding read back: %+v", got)
		}
		// Deleting again leaves the trace as it was.
		if err := d.DeleteBinding(ctx, "sip:tutor@paysip.test", "c1"); err != nil {
			t.Fatal(err)
		}
		if again, _ := d.BindingsChangedSince(ctx, mark); len(again) != 1 || !again[0].Updated.Equal(ch[0].Updated) {
			t.Fatalf("second delete moved the trace: %+v", again)
		}
		// A deleted binding put again is live again.
		put("sip:tutor@paysip.test", "c1", time.Hour, `{"contact":"a2"}`)
		if got, _ := d.Bindings(ctx, "sip:tutor@paysip.test", now); len(got) != 2 || string(got[0].Data) != `{"contact":"a2"}` {
			t.Fatalf("binding put after delete: %+v", got)
		}
		d.DeleteBinding(ctx, "sip:tutor@paysip.test", "c1")

		// Survives a reopen.
		d.Close()
		d, err = Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if got, _ := d.AllBindings(ctx, now); len(got) != 2 {
			t.Fatalf("after reopen: %+v", got)
		}

		// Reclaim: the expired binding goes now; the deletion's trace
		// stays for followers, and goes once older than the keep time.
		n, err := d.ReclaimBindings(ctx, now)
		if err != nil || n != 1 {
			t.Fatalf("reclaim at now: %d %v", n, err)
		}
		if ch, _ := d.BindingsChangedSince(ctx, mark); len(ch) == 0 || !ch[len(ch)-1].Deleted() {
			t.Fatalf("deletion trace reclaimed early: %+v", ch)
		}
		n, err = d.ReclaimBindings(ctx, now.Add(3*time.Hour))
		if err != nil || n != 3 { // c2, empty, and the trace of c1
			t.Fatalf("reclaim at +3 h: %d %v", n, err)
		}
		if all, _ := d.BindingsChangedSince(ctx, time.Time{}); len(all) != 0 {
			t.Fatalf("left after reclaiming everything: %+v", all)
		}
	})
}

// TestBindingLimits: what a registrar might pass from the outside is
// bounded.
func TestBindingLimits(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := b.open(t)
		exp := time.Now().Add(time.Hour)
		for _, bad := range []StoredBinding{
			{AOR: "", Key: "k", Expires: exp},
			{AOR: "sip:a@b", Key: "", Expires: exp},
			{AOR: strings.Repeat("a", MaxBindingKey+1), Key: "k", Expires: exp},
			{AOR: "sip:a@b", Key: "k", Expires: exp, Data: make([]byte, MaxBindingData+1)},
		} {
			if err := d.PutBinding(ctx, bad); !errors.Is(err, ErrBadBinding) {
				t.Errorf("stored %q/%q with %d bytes: %v", bad.AOR[:min(len(bad.AOR), 10)], bad.Key, len(bad.Data), err)
			}
		}
		// Unicode, quotes and SQL in keys and data are data.
		odd := StoredBinding{AOR: "sip:o'neil@paysip.test", Key: `"; DROP TABLE bindings; --`, Expires: exp, Data: []byte{0, 1, 0xff, '\''}}
		if err := d.PutBinding(ctx, odd); err != nil {
			t.Fatal(err)
		}
		got, err := d.Bindings(ctx, odd.AOR, time.Now())
		if err != nil || len(got) != 1 || got[0].Key != odd.Key || string(got[0].Data) != string(odd.Data) {
			t.Fatalf("%+v %v", got, err)
		}
	})
}

// TestPutBindingsKeepsLater: of two writes of one binding the later
// Updated stays, whichever arrives last; a batch is stored whole; times
// come back in UTC to the microsecond.
func TestPutBindingsKeepsLater(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := b.open(t)
		t0 := time.Date(2026, 11, 26, 1, 2, 3, 456789000, time.FixedZone("X", 3600))
		exp := time.Now().Add(time.Hour)
		newer := StoredBinding{AOR: "sip:a@x", Key: "k", Expires: exp, Data: []byte("newer"), Updated: t0.Add(time.Second)}
		older := StoredBinding{AOR: "sip:a@x", Key: "k", Expires: exp, Data: []byte("older"), Updated: t0}
		if err := d.PutBindings(ctx, []StoredBinding{newer, {AOR: "sip:b@x", Key: "k", Expires: exp, Data: []byte("b"), Updated: t0}}); err != nil {
			t.Fatal(err)
		}
		if err := d.PutBinding(ctx, older); err != nil {
			t.Fatal(err)
		}
		got, err := d.Bindings(ctx, "sip:a@x", time.Now())
		if err != nil || len(got) != 1 || string(got[0].Data) != "newer" || !got[0].Updated.Equal(newer.Updated) || got[0].Updated.Location() != time.UTC {
			t.Fatalf("late older write won: %+v %v", got, err)
		}
		// A batch with one bad binding stores nothing.
		if err := d.PutBindings(ctx, []StoredBinding{{AOR: "sip:c@x", Key: "k", Expires: exp}, {AOR: "", Key: "k"}}); !errors.Is(err, ErrBadBinding) {
			t.Fatalf("bad batch: %v", err)
		}
		if all, _ := d.AllBindings(ctx, time.Now()); len(all) != 2 {
			t.Fatalf("after a refused batch: %+v", all)
		}
	})
}

// TestSharedSecret: two handles on one database get the same secret, made
// once; another name is another secret.
func TestSharedSecret(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d1, dsn := b.open(t)
		d2, err := Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		s1, err := d1.SharedSecret(ctx, "sip-nonce", 32)
		if err != nil || len(s1) != 32 {
			t.Fatalf("%x %v", s1, err)
		}
		s2, err := d2.SharedSecret(ctx, "sip-nonce", 32)
		if err != nil || string(s1) != string(s2) {
			t.Fatalf("second handle: %x vs %x %v", s2, s1, err)
		}
		other, _ := d2.SharedSecret(ctx, "other", 32)
		if string(other) == string(s1) {
			t.Fatal("two names, one secret")
		}
		if _, err := d1.SharedSecret(ctx, "tiny", 4); err == nil {
			t.Fatal("4-byte secret made")
		}
	})
}

// TestBindingsFeedSkipsWriter: a node's feed leaves out the rows it wrote
// last, and returns those another node wrote last (its own binding
// overwritten by another included) and deletions (no writer).
func TestBindingsFeedSkipsWriter(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := b.open(t)
		now := time.Now().Truncate(time.Microsecond)
		since := now.Add(-time.Second)
		put := func(writer, aor, key string) {
			t.Helper()
			if err := d.PutBinding(ctx, StoredBinding{AOR: aor, Key: key, Expires: now.Add(time.Hour), Data: []byte(writer), Writer: writer}); err != nil {
				t.Fatal(err)
			}
		}
		put("a", "sip:one@paysip.test", "c1")
		put("a", "sip:two@paysip.test", "c1")
		put("b", "sip:three@paysip.test", "c1")
		put("b", "sip:two@paysip.test", "c1") // b overwrites a's
		if err := d.DeleteBinding(ctx, "sip:one@paysip.test", "c1"); err != nil {
			t.Fatal(err)
		}
		keys := func(writer string) string {
			t.Helper()
			got, mark, err := d.BindingsChangedSinceExcept(ctx, since, writer)
			if err != nil {
				t.Fatal(err)
			}
			if all, _ := d.BindingsChangedSince(ctx, since); !mark.Equal(all[len(all)-1].Updated) {
				t.Fatalf("mark %v, newest change %v", mark, all[len(all)-1].Updated)
			}
			var ks []string
			for _, g := range got {
				ks = append(ks, g.AOR)
			}
			sort.Strings(ks)
			return strings.Join(ks, " ")
		}
		if got, want := keys("a"), "sip:one@paysip.test sip:three@paysip.test sip:two@paysip.test"; got != want {
			t.Fatalf("a's feed: %s, want %s", got, want)
		}
		if got, want := keys("b"), "sip:one@paysip.test"; got != want {
			t.Fatalf("b's feed: %s, want %s", got, want)
		}
		if got, want := keys(""), "sip:one@paysip.test sip:three@paysip.test sip:two@paysip.test"; got != want {
			t.Fatalf("feed of no writer: %s, want %s", got, want)
		}
	})
}

// TestMigration5To6: a database at schema 5 holding bindings loses the
// redundant index bindings_updated; its bindings and the feed survive;
// on SQLite every query of the feed and of reclaim still runs on an
// index (no full scan of the table).
func TestMigration5To6(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		name := b.fresh(t)
		db, dl := raw(t, name)
		if err := migrateDialect(db, dl, 5); err != nil {
			t.Fatal(err)
		}
		now := time.Now().Truncate(time.Microsecond)
		if _, err := db.Exec(dl.rebind(`INSERT INTO bindings (aor, bkey, expires_us, data, updated_us, writer) VALUES (?, ?, ?, ?, ?, ?)`),
			"sip:a@x", "k", now.Add(time.Hour).UnixMicro(), []byte("old row"), now.UnixMicro(), "n1"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		st, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		db, _ = raw(t, name)
		if m := schemaMeta(t, db, dl); m.version != int64(SchemaVersion) {
			t.Fatalf("version %d", m.version)
		}
		indexQ := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bindings' AND name LIKE 'bindings_%' ORDER BY name"
		if dl == postgresDialect {
			indexQ = "SELECT indexname FROM pg_indexes WHERE tablename = 'bindings' AND indexname LIKE 'bindings_%' AND indexname NOT LIKE '%pkey' ORDER BY indexname"
		}
		rows, err := db.Query(indexQ)
		if err != nil {
			t.Fatal(err)
		}
		var idx []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			idx = append(idx, n)
		}
		rows.Close()
		if got := strings.Join(idx, " "); got != "bindings_expires bindings_updated_writer" {
			t.Fatalf("indexes after migration: %s", got)
		}
		recs, mark, err := st.BindingsChangedSinceExcept(ctx, now.Add(-time.Second), "n2")
		if err != nil || len(recs) != 1 || string(recs[0].Data) != "old row" || !mark.Equal(now) {
			t.Fatalf("feed after migration: %+v %v %v", recs, mark, err)
		}
		if dl != sqliteDialect {
			return
		}
		for _, q := range []string{
			"SELECT MAX(updated_us) FROM bindings WHERE updated_us > 1",
			"SELECT " + bindingColumns + " FROM bindings WHERE updated_us > 1 AND writer <> 'n' ORDER BY updated_us, aor, bkey",
			"SELECT " + bindingColumns + " FROM bindings WHERE updated_us > 1 ORDER BY updated_us, aor, bkey",
			"SELECT " + bindingColumns + " FROM bindings WHERE aor = 'a' AND expires_us > 1 AND data IS NOT NULL ORDER BY bkey",
			"DELETE FROM bindings WHERE expires_us <= 1 AND (data IS NOT NULL OR updated_us <= 1)",
		} {
			rows, err := db.Query("EXPLAIN QUERY PLAN " + q)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				rows.Scan(&id, &parent, &unused, &detail)
				plan = append(plan, detail)
			}
			rows.Close()
			p := strings.Join(plan, "; ")
			if !strings.Contains(p, "USING") || strings.Contains(p, "SCAN bindings") && !strings.Contains(p, "INDEX") {
				t.Errorf("%s: plan %s", q, p)
			}
			t.Logf("%s: %s", q, p)
		}
	})
}

// TestPutBindingsBatch: a batch longer than one statement, holding some
// bindings twice, ends as one upsert per binding in order would: the
// later Updated stays, of two equal the later in the batch; a zero
// Updated is stamped by the store.
func TestPutBindingsBatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := b.open(t)
		t0 := time.Now().Add(-time.Minute).Truncate(time.Microsecond).UTC()
		exp := time.Now().Add(time.Hour)
		var batch []StoredBinding
		for i := range 150 {
			batch = append(batch, StoredBinding{AOR: fmt.Sprintf("sip:u%d@x", i), Key: "k", Expires: exp, Data: []byte(fmt.Sprint(i)), Updated: t0, Writer: "w"})
		}
		dup := func(at int, aor, data string, u time.Time) {
			batch = slices.Insert(batch, at, StoredBinding{AOR: aor, Key: "k", Expires: exp, Data: []byte(data), Updated: u, Writer: "w2"})
		}
		dup(100, "sip:u10@x", "older", t0.Add(-time.Second)) // u10 (t0) stays
		dup(120, "sip:u20@x", "newer", t0.Add(time.Second))  // replaces u20
		dup(31, "sip:u30@x", "same", t0)                     // right after u30: equal Updated, the later stays
		dup(140, "sip:u40@x", "", time.Time{})               // stamped now: replaces u40
		dup(5, "sip:u140@x", "first", t0.Add(time.Hour))     // before u140: later Updated, stays
		before := time.Now().Add(-time.Second)
		if err := d.PutBindings(ctx, batch); err != nil {
			t.Fatal(err)
		}
		all, err := d.AllBindings(ctx, time.Now())
		if err != nil || len(all) != 150 {
			t.Fatalf("%d bindings, %v", len(all), err)
		}
		want := map[string]string{"sip:u10@x": "10", "sip:u20@x": "newer", "sip:u30@x": "same", "sip:u40@x": "", "sip:u140@x": "first", "sip:u77@x": "77"}
		for _, g := range all {
			w, ok := want[g.AOR]
			if !ok {
				continue
			}
			if string(g.Data) != w {
				t.Errorf("%s: %q, want %q", g.AOR, g.Data, w)
			}
			if g.AOR == "sip:u40@x" && (g.Updated.Before(before) || g.Updated.After(time.Now().Add(time.Second))) {
				t.Errorf("zero Updated stamped %v", g.Updated)
			}
			delete(want, g.AOR)
		}
		if len(want) != 0 {
			t.Fatalf("missing %v", want)
		}
	})
}
