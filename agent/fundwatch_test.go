package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
)

// statusChain answers TxStatuses from a table and counts the requests;
// Broadcast refuses (a funding that left the mempool was double spent).
type statusChain struct {
	chain.Chain
	mu        sync.Mutex
	status    map[chainhash.Hash]chain.TxStatus
	batches   atomic.Int64
	broadcast atomic.Int64
}

func (c *statusChain) TxStatuses(ctx context.Context, ids []chainhash.Hash) ([]chain.TxStatus, error) {
	c.batches.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]chain.TxStatus, len(ids))
	for i, id := range ids {
		out[i] = c.status[id]
	}
	return out, nil
}

func (c *statusChain) Broadcast(context.Context, *wire.MsgTx) error {
	c.broadcast.Add(1)
	return chain.ErrConflict
}

func (c *statusChain) set(id chainhash.Hash, st chain.TxStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[id] = st
}

func fundingTx(n int) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: uint32(n)}, nil, nil))
	tx.AddTxOut(wire.NewTxOut(int64(n+1), nil))
	return tx
}

// TestFundingWatchOneRequestPerPoll: a thousand sessions watching their
// unconfirmed fundings make one request to the node per poll between
// them; each is told when its own funding confirms, or leaves the
// mempool (and only then).
func TestFundingWatchOneRequestPerPoll(t *testing.T) {
	c := &statusChain{status: map[chainhash.Hash]chain.TxStatus{}}
	a := &Payee{Chain: c, Poll: 20 * time.Millisecond}
	const n = 1000
	txs := make([]*wire.MsgTx, n)
	outs := make([]<-chan bool, n)
	for i := range txs {
		txs[i] = fundingTx(i)
		c.set(txs[i].TxHash(), chain.TxStatus{Known: true})
		var stop func()
		outs[i], stop = a.watchFundingTx(txs[i])
		defer stop()
	}
	start := time.Now()
	for c.batches.Load() < 3 && time.Since(start) < 10*time.Second {
		time.Sleep(a.Poll)
	}
	// At most one request per poll, whatever the load (the watch sleeps a
	// poll between two): not one per session.
	if b, most := c.batches.Load(), int64(time.Since(start)/a.Poll)+2; b < 3 || b > most {
		t.Fatalf("%d requests to the node in %d polls", b, most)
	}
	for i := range outs {
		select {
		case v := <-outs[i]:
			t.Fatalf("funding %d: told %v while in the mempool", i, v)
		default:
		}
	}
	// Half confirm, a quarter are double spent, the rest stay.
	for i, tx := range txs {
		switch {
		case i%2 == 0:
			c.set(tx.TxHash(), chain.TxStatus{Known: true, Confirmations: 1})
		case i%4 == 1:
			c.set(tx.TxHash(), chain.TxStatus{})
		}
	}
	for i := range outs {
		if i%4 == 3 {
			continue
		}
		select {
		case v := <-outs[i]:
			if v != (i%2 == 0) {
				t.Fatalf("funding %d: told confirmed=%v", i, v)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("funding %d: not told", i)
		}
	}
	if b := c.broadcast.Load(); b != n/4 {
		t.Fatalf("%d broadcasts of the %d fundings gone, want one each", b, n/4)
	}
	time.Sleep(5 * a.Poll)
	for i := 3; i < n; i += 4 {
		select {
		case v := <-outs[i]:
			t.Fatalf("funding %d: told %v while in the mempool", i, v)
		default:
		}
	}
	a.fundings.mu.Lock()
	left := len(a.fundings.txs)
	a.fundings.mu.Unlock()
	if left != n/4 {
		t.Fatalf("%d fundings watched, want %d", left, n/4)
	}
}

// TestFundingWatchStops: once no session watches, the watch's goroutine
// ends and asks nothing more.
func TestFundingWatchStops(t *testing.T) {
	c := &statusChain{status: map[chainhash.Hash]chain.TxStatus{}}
	a := &Payee{Chain: c, Poll: 10 * time.Millisecond}
	tx := fundingTx(1)
	c.set(tx.TxHash(), chain.TxStatus{Known: true})
	_, stop := a.watchFundingTx(tx)
	time.Sleep(5 * a.Poll)
	stop()
	time.Sleep(5 * a.Poll)
	before := c.batches.Load()
	time.Sleep(10 * a.Poll)
	if after := c.batches.Load(); after != before {
		t.Fatalf("still asking: %d requests after the last watch ended", after-before)
	}
	a.fundings.mu.Lock()
	running := a.fundings.running
	a.fundings.mu.Unlock()
	if running {
		t.Fatal("the watch goroutine is still running")
	}
}
