package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"
)

// TestOutputIndexFromID: the channel's output is the one its id names,
// not one found by searching the funding (a funding paying the pool twice
// was recorded at the wrong output, and every settlement was refused).
func TestOutputIndexFromID(t *testing.T) { eachBackend(t, testOutputIndexFromID) }

func testOutputIndexFromID(t *testing.T, b backend) {
	ctx := context.Background()
	d, _ := b.open(t)
	r := record(t, Payee, 1)
	// Output 0 pays someone else; the pool is output 1.
	pool := r.FundingTx.TxOut[0]
	r.FundingTx.TxOut = []*wire.TxOut{wire.NewTxOut(5000, append([]byte{0, 20}, make([]byte, 20)...)), pool}
	r.Channel.Outpoint = wire.OutPoint{Hash: r.FundingTx.TxHash(), Index: 1}
	if err := d.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctx, r.Channel.ID())
	if err != nil || got.Channel.Outpoint != r.Channel.Outpoint {
		t.Fatalf("%v %v", got, err)
	}
	// A record whose id names an output that is not the pool is refused
	// on read, not silently moved to another output.
	bad := record(t, Payee, 2)
	bad.Channel.Outpoint.Index = 0
	bad.FundingTx.TxOut = append([]*wire.TxOut{wire.NewTxOut(5000, append([]byte{0, 20}, make([]byte, 20)...))}, bad.FundingTx.TxOut...)
	bad.Channel.Outpoint.Hash = bad.FundingTx.TxHash()
	if err := d.Insert(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, bad.Channel.ID()); err == nil {
		t.Fatal("a channel id naming a non-pool output was read back")
	}
}

// TestStartClosingStopsPayments: once a channel starts closing, no payment
// is stored any more, so none can be acknowledged after the settlement's
// amount was read.
func TestStartClosingStopsPayments(t *testing.T) { eachBackend(t, testStartClosingStopsPayments) }

func testStartClosingStopsPayments(t *testing.T, b backend) {
	ctx := context.Background()
	d, _ := b.open(t)
	r := record(t, Payee, 1)
	if err := d.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	id := r.Channel.ID()
	if err := d.PayeePayment(ctx, id, 3000, []byte{1}); err != nil {
		t.Fatal(err)
	}
	got, err := d.StartClosing(ctx, id)
	if err != nil || got.State != StateClosing || got.BestSat != 3000 {
		t.Fatalf("%+v %v", got, err)
	}
	if err := d.PayeePayment(ctx, id, 4000, []byte{2}); !errors.Is(err, ErrNotStored) {
		t.Fatalf("payment after closing: %v", err)
	}
	// Again: still closing, same best.
	if got, err = d.StartClosing(ctx, id); err != nil || got.BestSat != 3000 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := d.StartClosing(ctx, "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

// TestWriteRacingClose: writes that race the store's Close all return
// (stored, or ErrClosed), never wait forever: one queued after the
// writer's last drain was found hanging a payee's watcher in the soak.
func TestWriteRacingClose(t *testing.T) { eachBackend(t, testWriteRacingClose) }

func testWriteRacingClose(t *testing.T, b backend) {
	name := b.fresh(t)
	for round := 0; round < 20; round++ {
		d, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		r := record(t, Payee, round)
		if err := d.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 50)
		for i := 0; i < 50; i++ {
			go func(i int) { done <- d.PayeePayment(ctx, r.ID(), int64(1000+i), []byte{1}) }(i)
		}
		d.Close()
		for i := 0; i < 50; i++ {
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrNotStored) {
					t.Fatalf("write racing Close: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: a write racing Close never returned", round)
			}
		}
	}
}
