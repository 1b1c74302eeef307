package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// corruptible are the channel columns read back by scan.
var corruptible = []string{"role", "state", "peer", "key_index", "capacity_sat", "expiry_height", "payer_key", "payee_key",
	"payer_script", "funding_tx", "refund_tx", "signed_sat", "acked_sat", "best_sat", "best_sig", "close_txid", "updated_at"}

// corrupt writes v into one column of a stored channel behind the store's
// back (a damaged file, a bad migration, another program), as an integer,
// text or blob.
func corrupt(t testing.TB, d *DB, id string, col uint8, kind uint8, b []byte, n int64) {
	name := corruptible[int(col)%len(corruptible)]
	var v any
	switch kind % 4 {
	case 0:
		v = n
	case 1:
		v = string(b)
	case 2:
		v = b
	default:
		v = nil
	}
	// A CHECK or NOT NULL refusal is the schema holding: nothing to read.
	d.exec(context.Background(), fmt.Sprintf("UPDATE channels SET %s = ? WHERE id = ?", name), v, id)
}

// FuzzStoredChannel: a channel row with a corrupted column is read back
// with an error or as a record that still names the same channel (never a
// record under another channel's id, which an agent would settle or
// refund as if it were that one), with the same role, and never a panic.
func FuzzStoredChannel(f *testing.F) {
	for col := range corruptible {
		f.Add(uint8(col), uint8(0), []byte{}, int64(-1))
		f.Add(uint8(col), uint8(2), []byte{0x02, 0x00, 0x01}, int64(0))
		f.Add(uint8(col), uint8(1), []byte("payee"), int64(1<<40))
		f.Add(uint8(col), uint8(3), []byte(nil), int64(0))
	}
	d, err := Open(filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	f.Fuzz(func(t *testing.T, col, kind uint8, b []byte, n int64) { storedChannel(t, d, col, kind, b, n) })
}

// TestStoredChannelSeeds runs FuzzStoredChannel's seeds on every backend
// (the fuzzer itself runs on SQLite).
func TestStoredChannelSeeds(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		d, _ := be.open(t)
		for col := range corruptible {
			storedChannel(t, d, uint8(col), 0, []byte{}, -1)
			storedChannel(t, d, uint8(col), 2, []byte{0x02, 0x00, 0x01}, 0)
			storedChannel(t, d, uint8(col), 1, []byte("payee"), 1<<40)
			storedChannel(t, d, uint8(col), 3, nil, 0)
			storedChannel(t, d, uint8(col), 1, []byte("\x00\xff"), 1<<62)
		}
	})
}

// storedChannel is one run of FuzzStoredChannel.
func storedChannel(t *testing.T, d *DB, col, kind uint8, b []byte, n int64) {
	ctx := context.Background()
	d.exec(ctx, "DELETE FROM channels")
	r := record(t, Payer, 1)
	if err := d.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	id := r.ID()
	corrupt(t, d, id, col, kind, b, n)
	got, err := d.Get(ctx, id)
	if err == nil {
		if got.ID() != id {
			t.Fatalf("row %s read back as channel %s", id, got.ID())
		}
		if got.Role != Payer && got.Role != Payee {
			t.Fatalf("role %q", got.Role)
		}
	}
	recs, lerr := d.List(ctx)
	if (lerr == nil) != (err == nil) {
		t.Fatalf("Get: %v, List: %v", err, lerr)
	}
	if lerr == nil && (len(recs) != 1 || recs[0].ID() != id) {
		t.Fatalf("List read %d records", len(recs))
	}
}

// TestStoredChannelCorruptions: corruptions the store once read back
// without noticing are refused: a capacity (or funding) that no longer
// matches the funding's pool output (it read back as channel 000...:0), a
// negative or oversized amount, expiry or key index (they wrapped to
// uint32), a state no code knows.
func TestStoredChannelCorruptions(t *testing.T) { eachBackend(t, testStoredChannelCorruptions) }

func testStoredChannelCorruptions(t *testing.T, b backend) {
	d, _ := b.open(t)
	ctx := context.Background()
	var bad []string
	for _, c := range []struct {
		col string
		v   any
		ok  func(*Record) bool
	}{
		{"capacity_sat", int64(1 << 40), func(r *Record) bool { return r.Channel.Outpoint.Hash != [32]byte{} }},
		{"acked_sat", int64(-5), func(r *Record) bool { return r.AckedSat >= 0 }},
		{"signed_sat", int64(2_000_000), func(r *Record) bool { return r.SignedSat <= r.Channel.CapacitySat }},
		{"best_sat", int64(-1), func(r *Record) bool { return r.BestSat >= 0 }},
		{"key_index", int64(1 << 32), func(r *Record) bool { return int64(r.KeyIndex) == 1<<32 }},
		{"expiry_height", int64(-1), func(r *Record) bool { return r.Channel.ExpiryHeight != 1<<32-1 }},
		{"state", "garbage", func(r *Record) bool { return r.State != "garbage" }},
	} {
		d.exec(ctx, "DELETE FROM channels")
		r := record(t, Payer, 1)
		if err := d.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := d.exec(ctx, "UPDATE channels SET "+c.col+" = ? WHERE id = ?", c.v, r.ID()); err != nil {
			continue
		}
		got, err := d.Get(ctx, r.ID())
		if err == nil && !c.ok(got) {
			bad = append(bad, fmt.Sprintf("%s=%v", c.col, c.v))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("store.scan accepts corrupted columns without error: %v", bad)
	}
}
