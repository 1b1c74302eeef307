package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/failpoint"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

// Payer opens (or resumes) channels and pays through them.
type Payer struct {
	Wallet *wallet.Wallet
	Chain  chain.Chain
	Store  Store
	Log    *slog.Logger
	// MaxPriceSatPerMin refuses terms above it. Required: set it to the
	// price the caller saw (directory, 402) or the user's ceiling; with 0
	// no channel is opened or resumed.
	MaxPriceSatPerMin int64
	// CapacitySat is the pool opened when a new channel is needed (raised
	// to the payee's minimum, never above MaxCapacitySat).
	CapacitySat int64
	// MaxCapacitySat is the largest pool the user allows; 0 means
	// CapacitySat. Terms asking a larger minimum pool are refused.
	MaxCapacitySat int64
	// MaxLockBlocks bounds the refund's lock above the tip (default
	// channel.DefaultMaxLockBlocks).
	MaxLockBlocks uint32
	// MaxFirstPaymentSat, when set, refuses terms whose minimum first
	// payment is above it (the call's budget).
	MaxFirstPaymentSat int64
	// AckTimeout bounds the wait for a payment's ack (default 15 s): a
	// payee that stops acknowledging gets nothing more.
	AckTimeout time.Duration
	// ResumeMargin: a stored channel within this many blocks of its
	// refund lock is not resumed (default 14: the payee settles 12 blocks
	// before by default, and the call needs some room).
	ResumeMargin uint32
	// FeeTarget is the confirmation target of fee estimates (blocks).
	FeeTarget int
}

// ErrNoPriceCeiling: the payer was not told the most it may pay.
var ErrNoPriceCeiling = errors.New("no price ceiling set: refusing to pay any price")

// ErrAckTimeout: the payee did not acknowledge a payment in time.
var ErrAckTimeout = errors.New("payee did not acknowledge the payment in time")

// ErrNearExpiry: the stored channel is too close to its refund lock to be
// resumed; open a new one.
var ErrNearExpiry = errors.New("channel too close to its refund lock time to resume")

func (a *Payer) config(key *btcec.PrivateKey) channel.PayerConfig {
	maxCap := a.MaxCapacitySat
	if maxCap == 0 {
		maxCap = a.CapacitySat
	}
	return channel.PayerConfig{Key: key, MaxPriceSatPerMin: a.MaxPriceSatPerMin, MaxCapacitySat: maxCap,
		MaxLockBlocks: a.MaxLockBlocks, MaxFirstPaymentSat: a.MaxFirstPaymentSat, Agent: "paysip-go"}
}

func (a *Payer) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// PayerSession is one payer session on a channel.
type PayerSession struct {
	a          *Payer
	conn       Conn
	p          *channel.Payer
	keyIndex   uint32
	peer       string
	log        *slog.Logger
	FundingFee int64 // fee of the funding transaction, when this session opened the channel
	closed     *channel.Closed
	resuming   bool
}

// Open runs the seed's steps 1 to 4 on conn: learn the payee's terms,
// prepare the funding, get the refund signed, store it, broadcast the
// funding, and wait for the channel to open.
func (a *Payer) Open(ctx context.Context, conn Conn, peer string) (*PayerSession, error) {
	key, idx, err := a.Wallet.ChannelKey()
	if err != nil {
		return nil, err
	}
	if a.MaxPriceSatPerMin <= 0 {
		return nil, ErrNoPriceCeiling
	}
	s := &PayerSession{a: a, conn: conn, keyIndex: idx, peer: peer, log: a.log().With("component", "payer", "peer", peer)}
	cfg := a.config(key)
	if cfg.FeeRate, err = a.Chain.FeeRate(ctx, a.feeTarget()); err != nil {
		return nil, err
	}
	s.p = channel.NewPayer(cfg)
	tip, err := a.Chain.TipHeight(ctx)
	if err != nil {
		return nil, err
	}
	s.p.ObserveTip(uint32(tip))
	return s, s.start(ctx)
}

// Resume goes on paying from a stored channel (no new funding).
func (a *Payer) Resume(ctx context.Context, conn Conn, id string) (*PayerSession, error) {
	rec, err := a.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.Role != store.Payer || rec.State != store.StateOpen {
		return nil, fmt.Errorf("%w: %s is %s %s", channel.ErrResume, id, rec.Role, rec.State)
	}
	if a.MaxPriceSatPerMin <= 0 {
		return nil, ErrNoPriceCeiling
	}
	tip, err := a.Chain.TipHeight(ctx)
	if err != nil {
		return nil, err
	}
	margin := a.ResumeMargin
	if margin == 0 {
		margin = DefaultSettleMargin + 2
	}
	if uint64(tip)+uint64(margin) >= uint64(rec.Channel.ExpiryHeight) {
		return nil, fmt.Errorf("%w: %s locked until %d, tip %d", ErrNearExpiry, id, rec.Channel.ExpiryHeight, tip)
	}
	key, err := a.Wallet.ChannelKeyAt(rec.KeyIndex)
	if err != nil {
		return nil, err
	}
	cfg := a.config(key)
	if cfg.FeeRate, err = a.Chain.FeeRate(ctx, a.feeTarget()); err != nil {
		return nil, err
	}
	p, err := channel.ResumePayer(cfg, rec.PayerRecord())
	if err != nil {
		return nil, err
	}
	p.ObserveTip(uint32(tip))
	s := &PayerSession{a: a, conn: conn, p: p, keyIndex: rec.KeyIndex, peer: rec.Peer, resuming: true, log: a.log().With("component", "payer", "channel", id)}
	return s, s.start(ctx)
}

func (s *PayerSession) start(ctx context.Context) error {
	effs, err := s.p.Start()
	if err := s.exec(ctx, effs, err); err != nil {
		return err
	}
	return s.await(ctx, func() bool { return s.p.State() == channel.PayerOpen })
}

// Channel is the channel in use.
func (s *PayerSession) Channel() *channel.Channel { return s.p.Channel() }

// Terms are the payee's terms.
func (s *PayerSession) Terms() *channel.Terms { return s.p.Terms() }

// PaidSat is what the payee acknowledged.
func (s *PayerSession) PaidSat() int64 { return s.p.AckedSat() }

// MaxPayable is the most this channel can still pay (see channel.Payer).
func (s *PayerSession) MaxPayable() int64 { return s.p.MaxPayable() }

// Pay signs a payment of total (the payee's due so far), sends it and waits
// for its ack.
func (s *PayerSession) Pay(ctx context.Context, total int64) error {
	effs, err := s.p.Pay(total)
	if err := s.exec(ctx, effs, err); err != nil {
		return err
	}
	timeout := s.a.AckTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	actx, cancel := context.WithTimeoutCause(ctx, timeout, ErrAckTimeout)
	defer cancel()
	err = s.await(actx, func() bool { return !s.p.InFlight() })
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), ErrAckTimeout) {
		s.log.Warn("payee did not acknowledge: paying stops", "paid_sat", total, "timeout", timeout)
		return ErrAckTimeout
	}
	return err
}

// ExpiryHeight is the channel's refund lock time: the payee settles some
// blocks before it, ending the call (see agent.Payee.SettleMargin).
func (s *PayerSession) ExpiryHeight() uint32 { return s.p.Channel().ExpiryHeight }

// Close asks the payee to settle and waits for its answer.
func (s *PayerSession) Close(ctx context.Context, reason string) (*channel.Closed, error) {
	effs, err := s.p.Close(reason)
	if err := s.exec(ctx, effs, err); err != nil {
		return nil, err
	}
	if err := s.await(ctx, func() bool { return s.p.State() == channel.PayerClosed }); err != nil {
		return nil, err
	}
	return s.closed, nil
}

// await reads and handles messages until done.
func (s *PayerSession) await(ctx context.Context, done func() bool) error {
	for !done() {
		if s.p.State() == channel.PayerFailed || s.p.State() == channel.PayerClosed {
			return fmt.Errorf("session ended in state %v", s.p.State())
		}
		b, err := s.conn.Recv(ctx)
		if err != nil {
			return err
		}
		m, err := paywire.Decode(b)
		if err != nil {
			s.log.Warn("bad message from payee", "err", err)
			s.send(ctx, channel.BadMessage(0, err))
			return err
		}
		effs, herr := s.p.Handle(m)
		if err := s.exec(ctx, effs, herr); err != nil {
			return err
		}
	}
	return nil
}

func (s *PayerSession) send(ctx context.Context, m paywire.Message) error {
	return sendMsg(ctx, s.conn, m)
}

func (s *PayerSession) exec(ctx context.Context, effs []channel.Effect, herr error) error {
	return perform(effs, herr, s.log, func(ef channel.Effect) error { return s.perform(ctx, ef) })
}

func (s *PayerSession) perform(ctx context.Context, ef channel.Effect) error {
	a := s.a
	switch ef := ef.(type) {
	case channel.Send:
		return s.send(ctx, ef.Msg)
	case channel.TermsReceived:
		// The core has checked the terms against the user's limits; the
		// pool is the wanted capacity, raised to the payee's minimum
		// (which the core checked against MaxCapacitySat).
		t := ef.Terms
		capacity := max(a.CapacitySat, t.MinChannelSat)
		rate, err := a.Chain.FeeRate(ctx, a.feeTarget())
		if err != nil {
			return err
		}
		key, err := a.Wallet.ChannelKeyAt(s.keyIndex)
		if err != nil {
			return err
		}
		tx, fee, err := a.Wallet.FundChannel(ctx, key.PubKey(), t.PayeeKey, capacity, rate)
		if err != nil {
			s.abort(ctx, fmt.Sprintf("payer cannot fund a pool of %d sat", capacity))
			return err
		}
		s.FundingFee = fee
		script, err := a.Wallet.NewScript()
		if err != nil {
			return err
		}
		s.log.Info("funding prepared", "capacity_sat", capacity, "fee_sat", fee, "price_sat_per_min", t.PriceSatPerMin)
		effs, err := s.p.Fund(channel.FundRequest{FundingTx: tx, Vout: 0, PayerScript: script, RefundFee: rate})
		if err != nil {
			s.abort(ctx, err.Error())
		}
		return s.exec(ctx, effs, err)
	case channel.PersistRefund:
		r := ef.Record
		if err := a.Store.Insert(ctx, store.Record{Role: store.Payer, Peer: s.peer, KeyIndex: s.keyIndex, Channel: r.Channel, FundingTx: r.FundingTx, RefundTx: r.RefundTx}); err != nil {
			return err
		}
		failpoint.Hit("payer-refund-stored")
	case channel.BroadcastFunding:
		if err := a.Chain.Broadcast(ctx, ef.Tx); err != nil && !errors.Is(err, chain.ErrAlreadyKnown) {
			return fmt.Errorf("broadcasting funding: %w", err)
		}
		s.log.Info("funding broadcast", "txid", ef.Tx.TxHash())
		failpoint.Hit("payer-funding-broadcast")
	case channel.Opened:
		s.log = s.log.With("channel", ef.Channel.ID())
		s.log.Info("channel open", "capacity_sat", ef.Channel.CapacitySat, "paid_sat", ef.PaidSat)
	case channel.PersistPayment:
		if err := a.Store.PayerSigned(ctx, ef.ChannelID, ef.PaidSat, ef.Sig); err != nil {
			return err
		}
		failpoint.Hit("payer-payment-stored")
	case channel.Acked:
		if err := a.Store.PayerAcked(ctx, s.p.Channel().ID(), ef.PaidSat); err != nil {
			return err
		}
		failpoint.Hit("payer-acked")
	case channel.Closed:
		c := ef
		s.closed = &c
		s.log.Info("channel closed by the payee", "paid_sat", ef.PaidSat, "settlement", ef.SettlementTxID)
		if ef.SettlementTxID != "" {
			return a.Store.SetState(ctx, ef.ChannelID, store.StateClosing, ef.SettlementTxID)
		}
	case channel.PeerError:
		s.log.Warn("payee refused", "code", ef.Msg.Code, "reason", ef.Msg.Reason)
		if ef.Msg.Code == paywire.CodeInternal && s.resuming {
			return fmt.Errorf("%w: %s: %s (the channel stays open; try again)", channel.ErrPeer, ef.Msg.Code, ef.Msg.Reason)
		}
		if ef.Msg.Code == paywire.CodeUnknownChannel && s.resuming {
			// A resume the payee cannot serve (it never stored the
			// channel, or closed it): only the refund is left, and the
			// payee can take at most what was signed before then.
			if err := a.Store.SetState(ctx, s.p.Channel().ID(), store.StateRefundOnly, ""); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s", ErrResumeRefused, ef.Msg.Reason)
		}
		return fmt.Errorf("%w: %s: %s", channel.ErrPeer, ef.Msg.Code, ef.Msg.Reason)
	default:
		return fmt.Errorf("payer: effect %T not handled", ef)
	}
	return nil
}

// abort tells the payee why the payer gives up before funding (best
// effort): nothing was broadcast.
func (s *PayerSession) abort(ctx context.Context, reason string) {
	e := &paywire.Error{Code: paywire.CodeInternal, Reason: reason}
	e.SetVersion(paywire.Version1)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	s.send(sctx, e)
}

func (a *Payer) feeTarget() int {
	if a.FeeTarget == 0 {
		return 6
	}
	return a.FeeTarget
}

// ErrResumeRefused: the payee does not know the channel; it is left to its
// refund (state refund-only).
var ErrResumeRefused = errors.New("payee refused to resume the channel")

// ErrRefundNotYet: the refund's lock time is not reached.
type ErrRefundNotYet struct{ Tip, LockTime uint32 }

func (e *ErrRefundNotYet) Error() string {
	return fmt.Sprintf("refund locked until height %d; the chain is at %d (%d blocks to go)", e.LockTime, e.Tip, e.LockTime-e.Tip)
}

// Refund broadcasts a channel's refund once the chain's tip reaches its
// lock time. If the pool was already spent (the payee settled, or the
// refund went out before) it says so instead of retrying. It returns the
// spending transaction's id.
func (a *Payer) Refund(ctx context.Context, id string) (string, error) {
	rec, err := a.Store.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if rec.Role != store.Payer || rec.RefundTx == nil {
		return "", fmt.Errorf("%s is not a payer channel with a refund", id)
	}
	if txid, done, err := Reconcile(ctx, a.Chain, a.Store, rec); err != nil || done {
		return txid, err
	}
	tip, err := a.Chain.TipHeight(ctx)
	if err != nil {
		return "", err
	}
	lock := rec.RefundTx.LockTime
	if uint32(tip) < lock {
		return "", &ErrRefundNotYet{Tip: uint32(tip), LockTime: lock}
	}
	txid := rec.RefundTx.TxHash().String()
	if err := a.Store.SetState(ctx, id, store.StateClosing, txid); err != nil {
		return "", err
	}
	switch err := a.Chain.Broadcast(ctx, rec.RefundTx); {
	case err == nil, errors.Is(err, chain.ErrAlreadyKnown):
		a.log().Info("refund broadcast", "channel", id, "txid", txid)
		return txid, nil
	case errors.Is(err, chain.ErrNonFinal):
		return "", &ErrRefundNotYet{Tip: uint32(tip), LockTime: lock}
	case errors.Is(err, chain.ErrConflict):
		// Spent meanwhile by the other path: find out by what.
		txid, _, rerr := Reconcile(ctx, a.Chain, a.Store, rec)
		return txid, rerr
	default:
		return "", err
	}
}

// Reconcile looks at the chain for a channel's pool: if it is spent, the
// channel's state says by what (settled or refunded) and done is true.
func Reconcile(ctx context.Context, c chain.Chain, db Store, rec *store.Record) (txid string, done bool, err error) {
	ch := rec.Channel
	spend, err := c.SpendOf(ctx, ch.Outpoint, ch.PkScript)
	if err != nil || spend == nil {
		return "", false, err
	}
	txid = spend.TxID.String()
	state := store.StateSettled
	if isRefund(rec, spend) {
		state = store.StateRefunded
	}
	if spend.Confirmations == 0 {
		state = store.StateClosing
	}
	if rec.State != state || rec.CloseTxID != txid {
		if err := db.SetState(ctx, ch.ID(), state, txid); err != nil {
			return "", false, err
		}
	}
	return txid, true, nil
}

// isRefund tells the payer's refund from a settlement by what it is: the
// stored refund itself, or a transaction of the refund's shape (one input,
// non-final, locked at the channel's expiry, one output to the payer's
// script). A settlement is unlocked (lock time 0) and pays the payee. A
// payee knows the refund only by its shape: it never stores it.
func isRefund(rec *store.Record, spend *chain.Spend) bool {
	if rec.RefundTx != nil && spend.TxID == rec.RefundTx.TxHash() {
		return true
	}
	tx, ch := spend.Tx, rec.Channel
	if tx == nil {
		// No transaction to look at: for the payee, anything but its own
		// settlement can only be the refund.
		return rec.Role == store.Payee && spend.TxID.String() != rec.CloseTxID
	}
	return tx.LockTime == ch.ExpiryHeight && len(tx.TxIn) == 1 && len(tx.TxOut) == 1 &&
		tx.TxIn[0].Sequence != wire.MaxTxInSequenceNum && bytes.Equal(tx.TxOut[0].PkScript, ch.PayerScript)
}

// WatchRefunds takes the refund of every open payer channel whose lock
// time the chain has reached, checking every poll until ctx ends. Channels
// the payee settled meanwhile are recognised and marked settled. onRefund,
// if not nil, is told of each refund broadcast.
func (a *Payer) WatchRefunds(ctx context.Context, poll time.Duration, onRefund func(id, txid string)) error {
	for {
		if err := a.watchRefundsOnce(ctx, onRefund); err != nil && ctx.Err() == nil {
			// The node may be restarting, the store busy: a watcher
			// that gave up would leave refunds untaken. Try again.
			a.log().Warn("refund watch", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// RefundDue is one round of WatchRefunds, for a caller that schedules
// its own rounds (a web page, at load and then now and then).
func (a *Payer) RefundDue(ctx context.Context, onRefund func(id, txid string)) error {
	return a.watchRefundsOnce(ctx, onRefund)
}

// watchRefundsOnce is one round of WatchRefunds.
func (a *Payer) watchRefundsOnce(ctx context.Context, onRefund func(id, txid string)) error {
	{
		if err := a.Recover(ctx); err != nil {
			a.log().Warn("recovery", "err", err)
		}
		recs, err := a.Store.List(ctx, store.StateOpen, store.StateRefundOnly, store.StateClosing)
		if err != nil {
			return err
		}
		tip, err := a.Chain.TipHeight(ctx)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Role != store.Payer || rec.RefundTx == nil {
				continue
			}
			if rec.State == store.StateClosing {
				// Confirmations move it on. A pool still unspent at the
				// lock time was never settled, whatever the payee said
				// (a "closed" naming a settlement it never made): the
				// refund is taken below.
				if _, done, err := Reconcile(ctx, a.Chain, a.Store, rec); err != nil || done {
					continue
				}
			}
			if uint32(tip) < rec.RefundTx.LockTime {
				continue
			}
			txid, err := a.Refund(ctx, rec.ID())
			var notYet *ErrRefundNotYet
			switch {
			case errors.As(err, &notYet):
			case err != nil:
				a.log().Warn("refund failed", "channel", rec.ID(), "err", err)
			case txid == rec.RefundTx.TxHash().String() && onRefund != nil:
				onRefund(rec.ID(), txid)
			}
		}
	}
	return nil
}

// Recover brings the payer's channels in line with the chain after a
// start (or a crash): it broadcasts again every stored funding the node
// does not know (always safe once the refund is stored; a crash may have
// come between storing and broadcasting, or the node may have lost its
// mempool), and reconciles channels already spent. Refunds are taken by
// WatchRefunds (or Refund) once their lock time is reached.
func (a *Payer) Recover(ctx context.Context) error {
	recs, err := a.Store.List(ctx, store.StateOpen, store.StateRefundOnly, store.StateClosing)
	if err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		if rec.Role != store.Payer {
			continue
		}
		if _, done, err := Reconcile(ctx, a.Chain, a.Store, rec); err != nil || done {
			errs = append(errs, err)
			continue
		}
		st, err := a.Chain.TxStatus(ctx, rec.Channel.Outpoint.Hash)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.Known {
			err := a.Chain.Broadcast(ctx, rec.FundingTx)
			switch {
			case err == nil, errors.Is(err, chain.ErrAlreadyKnown):
				a.log().Info("funding broadcast again", "channel", rec.ID())
			case errors.Is(err, chain.ErrConflict):
				// Its coins went elsewhere: the pool never existed.
				a.log().Warn("funding can no longer be broadcast: its coins are spent", "channel", rec.ID())
				errs = append(errs, a.Store.SetState(ctx, rec.ID(), store.StateRefunded, ""))
			default:
				errs = append(errs, fmt.Errorf("funding of %s: %w", rec.ID(), err))
			}
		}
	}
	return errors.Join(errs...)
}
