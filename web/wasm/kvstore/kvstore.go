// Package kvstore keeps the agents' channels (agent.Store) in a
// transactional key-value store: the browser's IndexedDB in the
// WebAssembly build (web/wasm's idb.go), a map in tests. It has the
// semantics of store.DB, checked against it by a differential test:
// stored amounts only grow, a payee payment is refused once its channel
// is closing (StartClosing), and every write is durable when it returns
// (the KV commits before Update returns), which is what makes an ack
// safe.
//
// Each channel is one JSON document under its id; the layout is
// versioned (docVersion).
package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/sat"
	"github.com/paysip/paysip/store"
)

// KV is a durable transactional map of documents.
type KV interface {
	// Update reads key's document (nil when absent), and stores what fn
	// returns, in one transaction committed durably before Update
	// returns. fn returning (nil, nil) writes nothing; an error from fn
	// aborts the transaction and is returned. fn must not block: in the
	// browser it runs inside IndexedDB's transaction.
	Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) error
	// Get returns key's document, nil when absent.
	Get(ctx context.Context, key string) ([]byte, error)
	// All returns every document.
	All(ctx context.Context) ([][]byte, error)
}

// Store is an agent.Store on a KV.
type Store struct {
	KV KV
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

var _ agent.Store = (*Store)(nil)

// docVersion is the layout of a stored channel document.
const docVersion = 1

// MaxDocSize bounds a stored document read back.
const MaxDocSize = 256 * 1024

type doc struct {
	V           int    `json:"v"`
	ID          string `json:"id"`
	Role        string `json:"role"`
	State       string `json:"state"`
	Peer        string `json:"peer"`
	KeyIndex    uint32 `json:"key_index"`
	CapacitySat int64  `json:"capacity_sat"`
	Expiry      uint32 `json:"expiry_height"`
	PayerKey    []byte `json:"payer_key"`
	PayeeKey    []byte `json:"payee_key"`
	PayerScript []byte `json:"payer_script"`
	FundingTx   []byte `json:"funding_tx"`
	RefundTx    []byte `json:"refund_tx,omitempty"`
	SignedSat   int64  `json:"signed_sat"`
	AckedSat    int64  `json:"acked_sat"`
	BestSat     int64  `json:"best_sat"`
	BestSig     []byte `json:"best_sig,omitempty"`
	CloseTxID   string `json:"close_txid,omitempty"`
	Created     int64  `json:"created_ms"`
	Updated     int64  `json:"updated_ms"`
}

func txBytes(tx *wire.MsgTx) []byte {
	if tx == nil {
		return nil
	}
	var b bytes.Buffer
	tx.Serialize(&b)
	return b.Bytes()
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func encode(r *store.Record, created, updated time.Time) ([]byte, error) {
	ch := r.Channel
	d := doc{V: docVersion, ID: ch.ID(), Role: string(r.Role), State: string(r.State), Peer: r.Peer, KeyIndex: r.KeyIndex,
		CapacitySat: ch.CapacitySat, Expiry: ch.ExpiryHeight, PayerKey: ch.PayerKey.SerializeCompressed(),
		PayeeKey: ch.PayeeKey.SerializeCompressed(), PayerScript: ch.PayerScript, FundingTx: txBytes(r.FundingTx),
		RefundTx: txBytes(r.RefundTx), SignedSat: r.SignedSat, AckedSat: r.AckedSat, BestSat: r.BestSat, BestSig: r.BestSig,
		CloseTxID: r.CloseTxID, Created: created.UnixMilli(), Updated: updated.UnixMilli()}
	return json.Marshal(d)
}

// decode reads a stored document back with store.DB's checks: a
// corrupted or tampered document fails loudly, never reads as other
// amounts.
func decode(b []byte) (*store.Record, *doc, error) {
	if len(b) > MaxDocSize {
		return nil, nil, fmt.Errorf("stored channel: %d bytes", len(b))
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("stored channel: %w", err)
	}
	if d.V != docVersion {
		return nil, nil, fmt.Errorf("stored channel %s: layout version %d, this paysip reads %d", d.ID, d.V, docVersion)
	}
	r := &store.Record{Role: store.Role(d.Role), State: store.State(d.State), Peer: d.Peer, KeyIndex: d.KeyIndex,
		SignedSat: d.SignedSat, AckedSat: d.AckedSat, BestSat: d.BestSat, BestSig: d.BestSig, CloseTxID: d.CloseTxID,
		UpdatedAt: time.UnixMilli(d.Updated)}
	if err := check(r, &d); err != nil {
		return nil, nil, fmt.Errorf("stored channel %s: %w", d.ID, err)
	}
	var err error
	if r.FundingTx, err = channel.DecodeTx(d.FundingTx); err != nil {
		return nil, nil, fmt.Errorf("stored funding: %w", err)
	}
	if d.RefundTx != nil {
		if r.RefundTx, err = channel.DecodeTx(d.RefundTx); err != nil {
			return nil, nil, fmt.Errorf("stored refund: %w", err)
		}
	}
	pk, err := channel.ParseKey(d.PayerKey)
	if err != nil {
		return nil, nil, err
	}
	ek, err := channel.ParseKey(d.PayeeKey)
	if err != nil {
		return nil, nil, err
	}
	op, err := wire.NewOutPointFromString(d.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("stored channel id %q: %w", d.ID, err)
	}
	ch, err := channel.NewChannel(*op, d.CapacitySat, pk, ek, d.Expiry, d.PayerScript)
	if err != nil {
		return nil, nil, err
	}
	if ch.ID() != d.ID || op.Hash != r.FundingTx.TxHash() || int(op.Index) >= len(r.FundingTx.TxOut) ||
		!bytes.Equal(r.FundingTx.TxOut[op.Index].PkScript, ch.PkScript) || r.FundingTx.TxOut[op.Index].Value != d.CapacitySat {
		return nil, nil, fmt.Errorf("stored channel %s: its funding does not pay the pool at that output", d.ID)
	}
	r.Channel = ch
	return r, &d, nil
}

// check refuses values no code could have written (store.DB's checkRow).
func check(r *store.Record, d *doc) error {
	switch r.Role {
	case store.Payer, store.Payee:
	default:
		return fmt.Errorf("unknown role %q", r.Role)
	}
	switch r.State {
	case store.StateOpen, store.StateClosing, store.StateSettled, store.StateRefunded, store.StateRefundOnly:
	default:
		return fmt.Errorf("unknown state %q", r.State)
	}
	if err := sat.Check(d.CapacitySat); err != nil || d.CapacitySat == 0 {
		return fmt.Errorf("capacity %d", d.CapacitySat)
	}
	for name, v := range map[string]int64{"signed": r.SignedSat, "acked": r.AckedSat, "best": r.BestSat} {
		if v < 0 || v > d.CapacitySat {
			return fmt.Errorf("%s amount %d outside [0, %d]", name, v, d.CapacitySat)
		}
	}
	if d.KeyIndex >= 1<<31 {
		return fmt.Errorf("key index %d", d.KeyIndex)
	}
	if d.Expiry == 0 || d.Expiry >= 500_000_000 {
		return fmt.Errorf("expiry height %d", d.Expiry)
	}
	return nil
}

// Insert implements agent.Store: a channel id is stored once.
func (s *Store) Insert(ctx context.Context, r store.Record) error {
	if r.Channel == nil || r.FundingTx == nil {
		return fmt.Errorf("%w: a record needs its channel and funding", store.ErrNotStored)
	}
	r.State = store.StateOpen
	now := s.now()
	b, err := encode(&r, now, now)
	if err != nil {
		return err
	}
	if _, _, err := decode(b); err != nil {
		return fmt.Errorf("%w: %w", store.ErrNotStored, err)
	}
	id := r.Channel.ID()
	return s.KV.Update(ctx, id, func(old []byte) ([]byte, error) {
		if old != nil {
			return nil, fmt.Errorf("%w: channel %s is already stored", store.ErrNotStored, id)
		}
		return b, nil
	})
}

// change applies fn to a stored channel in one transaction; fn reports
// whether the change is allowed (else ErrNotStored, as store.DB).
func (s *Store) change(ctx context.Context, id string, fn func(r *store.Record) bool) (*store.Record, error) {
	var out *store.Record
	err := s.KV.Update(ctx, id, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
		}
		r, d, err := decode(old)
		if err != nil {
			return nil, err
		}
		if !fn(r) {
			return nil, fmt.Errorf("%w: %s: stored value is already higher, or wrong role or state", store.ErrNotStored, id)
		}
		now := s.now()
		r.UpdatedAt = time.UnixMilli(now.UnixMilli())
		out = r
		return encode(r, time.UnixMilli(d.Created), now)
	})
	return out, err
}

// PayerSigned implements agent.Store: the payer's newest signed state,
// stored before it is sent; the signed value only grows (store.DB's
// PayerSigned says why), and a payment below the acknowledged is refused.
func (s *Store) PayerSigned(ctx context.Context, id string, signed int64, sig []byte) error {
	_, err := s.change(ctx, id, func(r *store.Record) bool {
		if r.Role != store.Payer || r.AckedSat > signed {
			return false
		}
		if signed >= r.SignedSat {
			r.SignedSat, r.BestSig = signed, append([]byte(nil), sig...)
		}
		return true
	})
	return err
}

// PayerAcked implements agent.Store.
func (s *Store) PayerAcked(ctx context.Context, id string, acked int64) error {
	_, err := s.change(ctx, id, func(r *store.Record) bool {
		if r.Role != store.Payer || r.AckedSat > acked {
			return false
		}
		r.AckedSat, r.SignedSat = acked, max(r.SignedSat, acked)
		return true
	})
	return err
}

// PayeePayment implements agent.Store: the payee's new best payment,
// stored before it is acknowledged; refused when not above the stored
// best, and once the channel is closing.
func (s *Store) PayeePayment(ctx context.Context, id string, paid int64, sig []byte) error {
	_, err := s.change(ctx, id, func(r *store.Record) bool {
		if r.Role != store.Payee || r.State != store.StateOpen || r.BestSat >= paid {
			return false
		}
		r.BestSat, r.BestSig = paid, append([]byte(nil), sig...)
		return true
	})
	return err
}

// SetState implements agent.Store.
func (s *Store) SetState(ctx context.Context, id string, state store.State, closeTxID string) error {
	_, err := s.change(ctx, id, func(r *store.Record) bool {
		r.State = state
		if closeTxID != "" {
			r.CloseTxID = closeTxID
		}
		return true
	})
	return err
}

// StartClosing implements agent.Store: an open channel becomes closing
// and is returned as stored, in one transaction (a closing one is
// returned as is); from then on PayeePayment refuses.
func (s *Store) StartClosing(ctx context.Context, id string) (*store.Record, error) {
	return s.change(ctx, id, func(r *store.Record) bool {
		if r.State == store.StateOpen {
			r.State = store.StateClosing
		}
		return true
	})
}

// Get implements agent.Store.
func (s *Store) Get(ctx context.Context, id string) (*store.Record, error) {
	b, err := s.KV.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
	}
	r, _, err := decode(b)
	return r, err
}

// List implements agent.Store: newest first; with states, only those.
func (s *Store) List(ctx context.Context, states ...store.State) ([]*store.Record, error) {
	all, err := s.KV.All(ctx)
	if err != nil {
		return nil, err
	}
	type item struct {
		r       *store.Record
		created int64
	}
	var items []item
	for _, b := range all {
		r, d, err := decode(b)
		if err != nil {
			return nil, err
		}
		keep := len(states) == 0
		for _, st := range states {
			keep = keep || r.State == st
		}
		if keep {
			items = append(items, item{r, d.Created})
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].created != items[j].created {
			return items[i].created > items[j].created
		}
		return items[i].r.ID() < items[j].r.ID()
	})
	out := make([]*store.Record, len(items))
	for i, it := range items {
		out[i] = it.r
	}
	return out, nil
}

// ErrAborted is what a KV returns when its transaction aborted (the
// browser's quota, a closed database).
var ErrAborted = errors.New("transaction aborted")

// Mem is a KV in memory (tests; a page without IndexedDB must not use it:
// nothing survives a reload).
type Mem struct {
	mu   sync.Mutex
	docs map[string][]byte
}

// Update implements KV.
func (m *Mem) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.docs == nil {
		m.docs = map[string][]byte{}
	}
	b, err := fn(bytes.Clone(m.docs[key]))
	if err != nil || b == nil {
		return err
	}
	m.docs[key] = bytes.Clone(b)
	return nil
}

// Get implements KV.
func (m *Mem) Get(ctx context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.docs[key]), nil
}

// All implements KV.
func (m *Mem) All(ctx context.Context) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	for _, b := range m.docs {
		out = append(out, bytes.Clone(b))
	}
	return out, nil
}
