package store

import (
	"os"
	"testing"
)

// The store checkpoints its WAL itself, off the writers' wait (lead):
// lone payments keep the WAL near checkpointCommits pages, where SQLite's
// own checkpoint (wal_autocheckpoint, the fallback) would let it grow to
// 20,000.
func TestWALCheckpointedByTheStore(t *testing.T) {
	d, path := open(t)
	r := record(t, Payee, 1)
	if err := d.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 72)
	for v := int64(1); v <= 3*checkpointCommits; v++ {
		if err := d.PayeePayment(ctx, r.ID(), v, sig); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// A WAL frame is a 24-byte header and a 4 KiB page; the file keeps
	// its largest size.
	if frames := fi.Size() / (24 + 4096); frames > checkpointCommits+50 {
		t.Fatalf("WAL of %d frames after %d lone commits: not checkpointed every %d commits", frames, 3*checkpointCommits, checkpointCommits)
	}
	got, err := d.Get(ctx, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.BestSat != 3*checkpointCommits {
		t.Fatalf("best %d, want %d", got.BestSat, 3*checkpointCommits)
	}
}
