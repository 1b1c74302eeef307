package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/sat"
)

// Role says which side of a channel this node is.
type Role string

// Roles.
const (
	Payer Role = "payer"
	Payee Role = "payee"
)

// State is a channel's life stage.
type State string

// States.
const (
	StateOpen     State = "open"     // refund stored (payer) / funding accepted (payee)
	StateClosing  State = "closing"  // settlement or refund broadcast, not yet confirmed
	StateSettled  State = "settled"  // the payee's settlement is on chain
	StateRefunded State = "refunded" // the payer's refund is on chain
	// StateRefundOnly: a payer channel the payee refused to resume (it
	// never stored it): only the refund, after its lock time, is left.
	StateRefundOnly State = "refund-only"
)

// Record is a stored channel.
type Record struct {
	Role      Role
	State     State
	Peer      string // the other side (a SIP address), informational
	KeyIndex  uint32 // this side's channel key in the wallet
	Channel   *channel.Channel
	FundingTx *wire.MsgTx
	RefundTx  *wire.MsgTx // payer only: complete refund
	SignedSat int64       // payer: highest payment signed
	AckedSat  int64       // payer: highest payment acknowledged
	BestSat   int64       // payee: best payment held
	BestSig   []byte      // payee: its signature; payer: signature of SignedSat
	CloseTxID string      // settlement or refund txid once broadcast
	UpdatedAt time.Time
}

// ID is the channel's id, its funding outpoint.
func (r *Record) ID() string { return r.Channel.ID() }

// PayerRecord converts for channel.ResumePayer.
func (r *Record) PayerRecord() channel.PayerRecord {
	return channel.PayerRecord{Channel: r.Channel, FundingTx: r.FundingTx, RefundTx: r.RefundTx, SignedSat: r.SignedSat, AckedSat: r.AckedSat}
}

// PayeeRecord converts for channel.Payee.Resume and settlement.
func (r *Record) PayeeRecord() channel.PayeeRecord {
	return channel.PayeeRecord{Channel: r.Channel, FundingTx: r.FundingTx, BestSat: r.BestSat, BestSig: r.BestSig}
}

func txBytes(tx *wire.MsgTx) []byte {
	if tx == nil {
		return nil
	}
	var b bytes.Buffer
	tx.Serialize(&b)
	return b.Bytes()
}

// Insert stores a new channel: the payer's at PersistRefund (before the
// funding is broadcast), the payee's at PersistChannel (before open).
func (d *DB) Insert(ctx context.Context, r Record) error {
	now := time.Now().Unix()
	ch := r.Channel
	return d.write(ctx, func(tx *txn) error {
		_, err := tx.Exec(`INSERT INTO channels (id, role, state, peer, key_index, capacity_sat, expiry_height,
			payer_key, payee_key, payer_script, funding_tx, refund_tx, signed_sat, acked_sat, best_sat, best_sig,
			close_txid, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			ch.ID(), string(r.Role), string(StateOpen), r.Peer, int64(r.KeyIndex), ch.CapacitySat, int64(ch.ExpiryHeight),
			ch.PayerKey.SerializeCompressed(), ch.PayeeKey.SerializeCompressed(), ch.PayerScript,
			txBytes(r.FundingTx), txBytes(r.RefundTx), r.SignedSat, r.AckedSat, r.BestSat, r.BestSig, r.CloseTxID, now, now)
		return err
	})
}

// PayerSigned stores the payer's newest signed state before it is sent.
// signed_sat is the most the payee may hold, so it only grows: a payment
// below it is stored as signed without lowering it. That happens after a
// resume where the payee held less than the payer had signed (the last
// payment was lost with the payee that got it: the payer goes on from
// what the payee holds, and may have given the lost one away). A payment
// below what was acknowledged is refused.
func (d *DB) PayerSigned(ctx context.Context, id string, signed int64, sig []byte) error {
	return d.update(ctx, id, `UPDATE channels SET
		best_sig = CASE WHEN signed_sat > ? THEN best_sig ELSE ? END,
		signed_sat = CASE WHEN signed_sat > ? THEN signed_sat ELSE ? END, updated_at = ?
		WHERE id = ? AND role = 'payer' AND acked_sat <= ?`, signed, sig, signed, signed, time.Now().Unix(), id, signed)
}

// PayerAcked stores what the payee acknowledged.
func (d *DB) PayerAcked(ctx context.Context, id string, acked int64) error {
	return d.update(ctx, id, `UPDATE channels SET acked_sat = ?, signed_sat = CASE WHEN signed_sat > ? THEN signed_sat ELSE ? END, updated_at = ?
		WHERE id = ? AND role = 'payer' AND acked_sat <= ?`, acked, acked, acked, time.Now().Unix(), id, acked)
}

// PayeePayment stores the payee's new best payment before it is
// acknowledged. A value not above the stored best is refused, and so is
// any payment once the channel is closing (StartClosing): a payment that
// comes after the settlement was built could never be cashed, so it must
// not be acknowledged.
func (d *DB) PayeePayment(ctx context.Context, id string, paid int64, sig []byte) error {
	return d.update(ctx, id, `UPDATE channels SET best_sat = ?, best_sig = ?, updated_at = ?
		WHERE id = ? AND role = 'payee' AND state = 'open' AND best_sat < ?`, paid, sig, time.Now().Unix(), id, paid)
}

// StartClosing moves an open channel to closing and returns it as stored,
// in one transaction that holds the channel's row lock (SELECT ... FOR
// UPDATE on Postgres; on SQLite the database's write lock, taken when the
// transaction begins): from then on PayeePayment
// refuses new payments, so the best payment read here is the last that
// can ever be acknowledged. A payment racing it is either stored before
// (and is in the record returned) or refused.
//
// The caller becomes the channel's closer (its owner, claims.go): a
// channel already closing is returned again to the handle that closes it
// (its settlement may be sent again), or to another once that one is gone
// (closed, or its process dead); while it lives, another handle gets
// ErrClaimed, so that of several processes sharing the database exactly
// one settles each channel.
func (d *DB) StartClosing(ctx context.Context, id string) (*Record, error) {
	if d.owner != nil {
		if err := d.owner.ensure(ctx); err != nil {
			return nil, err
		}
	}
	var rec *Record
	err := d.write(ctx, func(tx *txn) error {
		var state string
		var closer int64
		err := tx.QueryRow("SELECT state, closing_owner FROM channels WHERE id = ?"+d.dialect.forUpdate(), id).Scan(&state, &closer)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if err := d.claim(tx, id, State(state), closer); err != nil {
			return err
		}
		r, err := scan(tx.QueryRow("SELECT "+columns+" FROM channels WHERE id = ?", id))
		rec = r
		return err
	})
	return rec, err
}

// SetState moves a channel to state, recording the closing txid if given.
func (d *DB) SetState(ctx context.Context, id string, state State, closeTxID string) error {
	return d.update(ctx, id, `UPDATE channels SET state = ?, close_txid = CASE WHEN ? = '' THEN close_txid ELSE ? END, updated_at = ?
		WHERE id = ?`, string(state), closeTxID, closeTxID, time.Now().Unix(), id)
}

// update runs one UPDATE in the group commit and fails if no row matched.
func (d *DB) update(ctx context.Context, id string, query string, args ...any) error {
	return d.write(ctx, func(tx *txn) error {
		res, err := tx.execHot(query, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			var exists int
			tx.QueryRow("SELECT count(*) FROM channels WHERE id = ?", id).Scan(&exists)
			if exists == 0 {
				return fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			return fmt.Errorf("%w: %s: stored value is already higher, or wrong role", ErrNotStored, id)
		}
		return nil
	})
}

const columns = `id, role, state, peer, key_index, capacity_sat, expiry_height, payer_key, payee_key, payer_script,
	funding_tx, refund_tx, signed_sat, acked_sat, best_sat, best_sig, close_txid, updated_at`

func scan(row interface{ Scan(...any) error }) (*Record, error) {
	var (
		r                                     Record
		id, role, state                       string
		keyIndex, expiry, capacity, updatedAt int64
		payerKey, payeeKey, payerScript       []byte
		funding, refund                       []byte
	)
	if err := row.Scan(&id, &role, &state, &r.Peer, &keyIndex, &capacity, &expiry, &payerKey, &payeeKey, &payerScript,
		&funding, &refund, &r.SignedSat, &r.AckedSat, &r.BestSat, &r.BestSig, &r.CloseTxID, &updatedAt); err != nil {
		return nil, err
	}
	r.Role, r.State, r.KeyIndex, r.UpdatedAt = Role(role), State(state), uint32(keyIndex), time.Unix(updatedAt, 0)
	if err := checkRow(&r, capacity, keyIndex, expiry); err != nil {
		return nil, fmt.Errorf("stored channel %s: %w", id, err)
	}
	var err error
	if r.FundingTx, err = channel.DecodeTx(funding); err != nil {
		return nil, fmt.Errorf("stored funding: %w", err)
	}
	if refund != nil {
		if r.RefundTx, err = channel.DecodeTx(refund); err != nil {
			return nil, fmt.Errorf("stored refund: %w", err)
		}
	}
	pk, err := channel.ParseKey(payerKey)
	if err != nil {
		return nil, err
	}
	ek, err := channel.ParseKey(payeeKey)
	if err != nil {
		return nil, err
	}
	// The outpoint is the channel's id (txid:vout), checked against the
	// stored funding: the output there must pay the pool.
	op, err := wire.NewOutPointFromString(id)
	if err != nil {
		return nil, fmt.Errorf("stored channel id %q: %w", id, err)
	}
	ch, err := channel.NewChannel(*op, capacity, pk, ek, uint32(expiry), payerScript)
	if err != nil {
		return nil, err
	}
	if op.Hash != r.FundingTx.TxHash() || int(op.Index) >= len(r.FundingTx.TxOut) ||
		!bytes.Equal(r.FundingTx.TxOut[op.Index].PkScript, ch.PkScript) || r.FundingTx.TxOut[op.Index].Value != capacity {
		return nil, fmt.Errorf("stored channel %s: its funding does not pay the pool at that output", id)
	}
	r.Channel = ch
	return &r, nil
}

// checkRow refuses a stored row whose values no code could have written:
// a corrupted file must fail loudly, never read back as other amounts.
func checkRow(r *Record, capacity, keyIndex, expiry int64) error {
	switch r.Role {
	case Payer, Payee:
	default:
		return fmt.Errorf("unknown role %q", r.Role)
	}
	switch r.State {
	case StateOpen, StateClosing, StateSettled, StateRefunded, StateRefundOnly:
	default:
		return fmt.Errorf("unknown state %q", r.State)
	}
	if err := sat.Check(capacity); err != nil || capacity == 0 {
		return fmt.Errorf("capacity %d", capacity)
	}
	for name, v := range map[string]int64{"signed": r.SignedSat, "acked": r.AckedSat, "best": r.BestSat} {
		if v < 0 || v > capacity {
			return fmt.Errorf("%s amount %d outside [0, %d]", name, v, capacity)
		}
	}
	if keyIndex < 0 || keyIndex >= 1<<31 {
		return fmt.Errorf("key index %d", keyIndex)
	}
	if expiry <= 0 || expiry >= 500_000_000 {
		return fmt.Errorf("expiry height %d", expiry)
	}
	return nil
}

// Get returns one channel.
func (d *DB) Get(ctx context.Context, id string) (*Record, error) {
	r, err := scan(d.queryRow(ctx, "SELECT "+columns+" FROM channels WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return r, err
}

// List returns every channel, newest first; with states given, only those.
func (d *DB) List(ctx context.Context, states ...State) ([]*Record, error) {
	rows, err := d.query(ctx, "SELECT "+columns+" FROM channels ORDER BY created_at DESC, id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		if len(states) > 0 {
			keep := false
			for _, s := range states {
				keep = keep || r.State == s
			}
			if !keep {
				continue
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
