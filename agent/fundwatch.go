package agent

import (
	"context"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
)

// fundingWatch follows, for every session of a payee, the fundings it
// accepted before they confirmed: one goroutine, and one request to the
// node per Poll for all of them (chain.TxStatuses), where each session
// used to ask on its own clock (a thousand zero-conf calls being set up
// made a thousand requests a second, each a new connection to btcd). It
// runs while something is watched.
type fundingWatch struct {
	mu      sync.Mutex
	txs     map[chainhash.Hash]*watchedFunding
	running bool
}

type watchedFunding struct {
	tx   *wire.MsgTx
	subs map[chan bool]struct{} // told true: confirmed; false: gone
}

// watch follows funding until it confirms (true on the channel) or leaves
// the mempool for good (false: replaced or double spent; a funding the
// node lost, after a restart, is broadcast again first). stop ends the
// watch for this caller; the channel gets at most one value.
func (a *Payee) watchFundingTx(funding *wire.MsgTx) (<-chan bool, func()) {
	w := &a.fundings
	txid := funding.TxHash()
	ch := make(chan bool, 1)
	w.mu.Lock()
	if w.txs == nil {
		w.txs = map[chainhash.Hash]*watchedFunding{}
	}
	f := w.txs[txid]
	if f == nil {
		f = &watchedFunding{tx: funding, subs: map[chan bool]struct{}{}}
		w.txs[txid] = f
	}
	f.subs[ch] = struct{}{}
	if !w.running {
		w.running = true
		go a.runFundingWatch()
	}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if f := w.txs[txid]; f != nil {
			delete(f.subs, ch)
			if len(f.subs) == 0 {
				delete(w.txs, txid)
			}
		}
	}
}

// runFundingWatch asks the node, once per Poll, about every watched
// funding, until none is left.
func (a *Payee) runFundingWatch() {
	w := &a.fundings
	poll := orDefault(a.Poll, time.Second)
	var ids []chainhash.Hash
	for {
		time.Sleep(poll)
		w.mu.Lock()
		if len(w.txs) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		ids = ids[:0]
		for id := range w.txs {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), max(poll, 30*time.Second))
		sts, err := chain.TxStatuses(ctx, a.Chain, ids)
		if err != nil {
			// The node may be restarting: ask again next time.
			cancel()
			a.log().Debug("funding watch: asking the node", "fundings", len(ids), "err", err)
			continue
		}
		for i, id := range ids {
			st := sts[i]
			var confirmed bool
			switch {
			case st.Known && st.Confirmations > 0:
				confirmed = true
			case st.Known:
				continue
			default:
				w.mu.Lock()
				f := w.txs[id]
				w.mu.Unlock()
				if f == nil || a.rebroadcast(ctx, f.tx) {
					continue // no longer watched, or the node had lost it
				}
			}
			w.mu.Lock()
			if f := w.txs[id]; f != nil {
				for sub := range f.subs {
					sub <- confirmed
				}
				delete(w.txs, id)
			}
			w.mu.Unlock()
		}
		cancel()
	}
}
