//go:build !(js && wasm)

package kvstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

// TestSameAsSQLite drives the browser's store (on a map, as on
// IndexedDB) and store.DB (SQLite) through the same story, including
// every refusal, and compares each answer and the records left.
func TestSameAsSQLite(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(filepath.Join(t.TempDir(), "paysip.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kv := &kvstore.Store{KV: &kvstore.Mem{}}
	payer, payee, other := record(t, store.Payer, 1), record(t, store.Payee, 2), record(t, store.Payee, 3)
	pid, eid, oid := payer.ID(), payee.ID(), other.ID()
	sig := []byte{0x30, 1, 2}
	steps := []struct {
		name string
		do   func(s agent.Store) error
	}{
		{"insert payer", func(s agent.Store) error { return s.Insert(ctx, payer) }},
		{"insert payee", func(s agent.Store) error { return s.Insert(ctx, payee) }},
		{"insert other", func(s agent.Store) error { return s.Insert(ctx, other) }},
		{"insert twice", func(s agent.Store) error { return s.Insert(ctx, payee) }},
		{"signed 10", func(s agent.Store) error { return s.PayerSigned(ctx, pid, 10, sig) }},
		{"signed 10 again", func(s agent.Store) error { return s.PayerSigned(ctx, pid, 10, sig) }},
		{"signed back to 5", func(s agent.Store) error { return s.PayerSigned(ctx, pid, 5, sig) }},
		{"acked 20", func(s agent.Store) error { return s.PayerAcked(ctx, pid, 20) }},
		{"signed below acked", func(s agent.Store) error { return s.PayerSigned(ctx, pid, 15, sig) }},
		{"signed 30", func(s agent.Store) error { return s.PayerSigned(ctx, pid, 30, []byte{0x30, 3}) }},
		{"signed 25 after a resume", func(s agent.Store) error { return s.PayerSigned(ctx, pid, 25, sig) }},
		{"acked back to 3", func(s agent.Store) error { return s.PayerAcked(ctx, pid, 3) }},
		{"signed on a payee", func(s agent.Store) error { return s.PayerSigned(ctx, eid, 10, sig) }},
		{"payment on a payer", func(s agent.Store) error { return s.PayeePayment(ctx, pid, 10, sig) }},
		{"payment 100", func(s agent.Store) error { return s.PayeePayment(ctx, eid, 100, sig) }},
		{"payment 100 again", func(s agent.Store) error { return s.PayeePayment(ctx, eid, 100, sig) }},
		{"payment 90", func(s agent.Store) error { return s.PayeePayment(ctx, eid, 90, sig) }},
		{"payment 150", func(s agent.Store) error { return s.PayeePayment(ctx, eid, 150, []byte{9}) }},
		{"payment unknown", func(s agent.Store) error { return s.PayeePayment(ctx, "00:0", 150, sig) }},
		{"start closing", func(s agent.Store) error {
			r, err := s.StartClosing(ctx, eid)
			if err == nil && (r.State != store.StateClosing || r.BestSat != 150) {
				return fmt.Errorf("closing record %v %d", r.State, r.BestSat)
			}
			return err
		}},
		{"payment after closing", func(s agent.Store) error { return s.PayeePayment(ctx, eid, 200, sig) }},
		{"start closing again", func(s agent.Store) error { _, err := s.StartClosing(ctx, eid); return err }},
		{"start closing unknown", func(s agent.Store) error { _, err := s.StartClosing(ctx, "00:0"); return err }},
		{"settled", func(s agent.Store) error { return s.SetState(ctx, eid, store.StateSettled, "ab") }},
		{"state keeps txid", func(s agent.Store) error { return s.SetState(ctx, eid, store.StateSettled, "") }},
		{"state unknown", func(s agent.Store) error { return s.SetState(ctx, "00:0", store.StateSettled, "") }},
		{"other closing", func(s agent.Store) error { return s.SetState(ctx, oid, store.StateClosing, "") }},
		{"get unknown", func(s agent.Store) error { _, err := s.Get(ctx, "00:0"); return err }},
	}
	for _, st := range steps {
		a, b := class(st.do(db)), class(st.do(kv))
		if a != b {
			t.Errorf("%s: SQLite %s, browser store %s", st.name, a, b)
		}
	}
	for _, states := range [][]store.State{nil, {store.StateOpen}, {store.StateSettled, store.StateClosing}} {
		want, err := db.List(ctx, states...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := kv.List(ctx, states...)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != len(got) {
			t.Fatalf("List(%v): %d records, SQLite %d", states, len(got), len(want))
		}
		for i := range want {
			w, g := *want[i], *got[i]
			w.UpdatedAt, g.UpdatedAt = g.UpdatedAt, w.UpdatedAt
			if w.ID() != g.ID() && len(states) != 0 {
				// Same second in SQLite: order by id there too.
				continue
			}
			w2, _ := db.Get(ctx, g.ID())
			w2.UpdatedAt = g.UpdatedAt
			if !reflect.DeepEqual(*w2, g) {
				t.Errorf("record %s:\nSQLite  %+v\nbrowser %+v", g.ID(), *w2, g)
			}
		}
	}
}
