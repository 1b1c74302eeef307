package store

import (
	"testing"
	"time"
)

// TestStoredWhenWriteReturns: of concurrent writes racing Close, every
// one that returned nil is in the database when it is opened again: a
// write is durable when it returns.
func TestStoredWhenWriteReturns(t *testing.T) {
	_, path := open(t)
	for round := 0; round < 10; round++ {
		d, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for c := 0; c < 5; c++ {
			r := record(t, Payee, round*10+c)
			if err := d.Insert(ctx, r); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID())
		}
		type result struct {
			id  string
			v   int64
			err error
		}
		out := make(chan result, 200)
		for i := 0; i < 200; i++ {
			go func() {
				id, v := ids[i%len(ids)], int64(1000+i)
				out <- result{id, v, d.PayeePayment(ctx, id, v, []byte{1})}
			}()
		}
		time.Sleep(time.Duration(round) * time.Millisecond)
		d.Close()
		stored := map[string]int64{}
		for i := 0; i < 200; i++ {
			r := <-out
			if r.err == nil && r.v > stored[r.id] {
				stored[r.id] = r.v
			}
		}
		d, err = Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for id, v := range stored {
			rec, err := d.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.BestSat < v {
				t.Fatalf("round %d: channel %s holds %d, but the write of %d returned nil", round, id, rec.BestSat, v)
			}
		}
		d.Close()
	}
}
