package kvstore_test

import (
	"context"
	"testing"

	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

// FuzzStoredChannel: whatever a stored document holds (IndexedDB is the
// page's, and a page can be tampered with), reading it never panics, and
// what reads back keeps the bounds a stored channel must.
func FuzzStoredChannel(f *testing.F) {
	ctx := context.Background()
	mem := &kvstore.Mem{}
	r := record(f, store.Payer, 1)
	if err := (&kvstore.Store{KV: mem}).Insert(ctx, r); err != nil {
		f.Fatal(err)
	}
	good, _ := mem.Get(ctx, r.ID())
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &kvstore.Mem{}
		m.Update(ctx, "x", func([]byte) ([]byte, error) { return b, nil })
		rec, err := (&kvstore.Store{KV: m}).Get(ctx, "x")
		if err != nil {
			return
		}
		c := rec.Channel.CapacitySat
		if c <= 0 || rec.BestSat < 0 || rec.BestSat > c || rec.SignedSat > c || rec.AckedSat > c || rec.FundingTx.TxHash() != rec.Channel.Outpoint.Hash {
			t.Fatalf("read back out of bounds: %+v", rec)
		}
	})
}
