package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/failpoint"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

// Payee defaults. The expiry window is bitcoinj's clamp, 4 hours to 7 days
// of blocks; see README for the zero-conf reasoning.
const (
	DefaultMinChannelSat   = 100_000
	DefaultMinPaymentSat   = 1_000
	DefaultMinExpiryBlocks = 24
	DefaultMaxExpiryBlocks = 1008
	DefaultZeroConfMaxSat  = 1_000_000
	DefaultMinConf         = 1
)

// Payee answers payer sessions: it offers terms, signs refunds, takes
// payments (storing each before its ack) and settles on chain.
type Payee struct {
	Wallet *wallet.Wallet
	Chain  chain.Chain
	Store  Store
	Log    *slog.Logger

	PriceSatPerMin  int64
	MinChannelSat   int64  // default DefaultMinChannelSat
	MinPaymentSat   int64  // default DefaultMinPaymentSat
	MinStepSat      int64  // default 1
	MinExpiryBlocks uint32 // refund lock window, relative to the tip
	MaxExpiryBlocks uint32
	// ZeroConfMaxSat: a funding up to this amount is accepted as soon as
	// the node has it in its mempool; a larger one waits for MinConf
	// confirmations.
	ZeroConfMaxSat int64
	MinConf        int64
	// Poll is how often the chain is asked while waiting (default 1 s).
	Poll      time.Duration
	FeeTarget int
	// KeepOpen leaves a channel open when its session ends without close,
	// for the payer to resume; otherwise the payee settles at once.
	KeepOpen bool
	// SettleMargin: an open channel is settled once the chain is within
	// this many blocks of its refund's lock time (default 12, two hours).
	SettleMargin uint32
	// Metering, when set, ends a session whose payer falls behind it
	// (a paid call); nil lets payments come at the payer's pace.
	Metering *meter.Payee
	// OnPayment, if set, is told of every payment stored (running totals).
	OnPayment func(channelID string, paidSat int64)

	mu     sync.Mutex
	payout []byte
	active map[string]*claim // channel id -> the session serving it
}

func (a *Payee) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

func orDefault[T int | int64 | uint32 | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// PayoutScript is where settlements pay: one wallet address, allocated on
// first use.
func (a *Payee) PayoutScript() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.payout == nil {
		s, err := a.Wallet.NewScript()
		if err != nil {
			return nil, err
		}
		a.payout = s
	}
	return a.payout, nil
}

// Terms returns the terms offered now, for key.
func (a *Payee) Terms(ctx context.Context, key *btcec.PublicKey) (channel.Terms, error) {
	tip, err := a.Chain.TipHeight(ctx)
	if err != nil {
		return channel.Terms{}, err
	}
	payout, err := a.PayoutScript()
	if err != nil {
		return channel.Terms{}, err
	}
	return channel.Terms{
		PayeeKey: key, PriceSatPerMin: a.PriceSatPerMin, PayoutScript: payout,
		MinChannelSat:   orDefault(a.MinChannelSat, DefaultMinChannelSat),
		MinExpiryHeight: uint32(tip) + orDefault(a.MinExpiryBlocks, DefaultMinExpiryBlocks),
		MaxExpiryHeight: uint32(tip) + orDefault(a.MaxExpiryBlocks, DefaultMaxExpiryBlocks),
		MinPaymentSat:   orDefault(a.MinPaymentSat, DefaultMinPaymentSat),
		MinStepSat:      orDefault(a.MinStepSat, 1),
	}, nil
}

// PayeeResult says how a session ended.
type PayeeResult struct {
	ChannelID      string
	PaidSat        int64
	SettlementTxID string
}

type payeeSession struct {
	a        *Payee
	conn     Conn
	p        *channel.Payee
	keyIndex uint32
	peer     string
	log      *slog.Logger
	result   PayeeResult
	release  func()
	claim    *claim
	best     atomic.Int64 // paid in this call, for the watchdog
	paidBase int64        // held before this call (a resumed channel)
	watch    func()
}

// Serve runs one payer session on conn until it closes, the payer goes
// away, or ctx ends, and closes conn. A session that ends with the channel
// open and paid settles it unless KeepOpen.
func (a *Payee) Serve(ctx context.Context, conn Conn, peer string) (*PayeeResult, error) {
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(context.Canceled) }
	defer cancel()
	defer conn.Close()
	key, idx, err := a.Wallet.ChannelKey()
	if err != nil {
		return nil, err
	}
	terms, err := a.Terms(ctx, key.PubKey())
	if err != nil {
		return nil, err
	}
	p, err := channel.NewPayee(channel.PayeeConfig{Key: key, Terms: terms})
	if err != nil {
		return nil, err
	}
	s := &payeeSession{a: a, conn: conn, p: p, keyIndex: idx, peer: peer, log: a.log().With("component", "payee", "peer", peer)}
	defer func() {
		if s.release != nil {
			s.release()
		}
	}()
	if a.Metering != nil {
		s.watch = func() { go s.watchPayments(ctx, *a.Metering, &s.best, cancelCause) }
	}
	err = s.loop(ctx, cancel)
	if cause := context.Cause(ctx); errors.Is(cause, ErrPaymentLate) {
		err = ErrPaymentLate
	}
	a.mu.Lock()
	takenOver := s.claim != nil && s.claim.taken
	a.mu.Unlock()
	if s.p.State() == channel.PayeeOpen && s.p.BestSat() > 0 && !a.KeepOpen && !takenOver {
		// The payer went away (or misbehaved) mid-call: settle alone.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer scancel()
		txid, serr := a.settleOrLater(sctx, s.p.Channel().ID())
		if serr != nil {
			return &s.result, errors.Join(err, serr)
		}
		s.result.SettlementTxID = txid
	}
	return &s.result, err
}

func (s *payeeSession) loop(ctx context.Context, cancel context.CancelFunc) error {
	for {
		switch s.p.State() {
		case channel.PayeeClosed:
			return nil
		case channel.PayeeFailed:
			return fmt.Errorf("session ended by an error")
		}
		b, err := s.conn.Recv(ctx)
		if err != nil {
			if errors.Is(err, ErrConnClosed) || errors.Is(err, context.Canceled) {
				s.log.Info("payer gone", "state", s.p.State(), "paid_sat", s.p.BestSat())
			}
			return err
		}
		m, err := paywire.Decode(b)
		if err != nil {
			s.log.Warn("bad message from payer", "err", err)
			s.send(ctx, channel.BadMessage(0, err))
			return err
		}
		effs, herr := s.p.Handle(m)
		if err := s.exec(ctx, cancel, effs, herr); err != nil {
			return err
		}
	}
}

func (s *payeeSession) send(ctx context.Context, m paywire.Message) error {
	return sendMsg(ctx, s.conn, m)
}

func (s *payeeSession) exec(ctx context.Context, cancel context.CancelFunc, effs []channel.Effect, herr error) error {
	return perform(effs, herr, s.log, func(ef channel.Effect) error { return s.perform(ctx, cancel, ef) })
}

func (s *payeeSession) perform(ctx context.Context, cancel context.CancelFunc, ef channel.Effect) error {
	a := s.a
	switch ef := ef.(type) {
	case channel.Send:
		if err := s.send(ctx, ef.Msg); err != nil {
			return err
		}
		switch ef.Msg.(type) {
		case *paywire.RefundSigned:
			failpoint.Hit("payee-refund-signed")
		case *paywire.Ack:
			failpoint.Hit("payee-acked")
		}
	case channel.ResumeRequested:
		rec, err := a.Store.Get(ctx, ef.ChannelID)
		var effs []channel.Effect
		var herr error
		switch {
		case err != nil:
			effs, herr = s.p.RefuseResume("unknown channel")
		case rec.Role != store.Payee || rec.State != store.StateOpen:
			effs, herr = s.p.RefuseResume(fmt.Sprintf("channel is %s", rec.State))
		default:
			key, kerr := a.Wallet.ChannelKeyAt(rec.KeyIndex)
			if kerr != nil {
				return kerr
			}
			s.keyIndex, s.peer = rec.KeyIndex, rec.Peer
			effs, herr = s.p.Resume(rec.PayeeRecord(), key)
		}
		return s.exec(ctx, cancel, effs, herr)
	case channel.FundingReceived:
		if err := a.acceptFunding(ctx, ef.Channel, ef.Tx.TxHash().String(), func(c context.Context) error {
			err := a.Chain.Broadcast(c, ef.Tx)
			if errors.Is(err, chain.ErrAlreadyKnown) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
		failpoint.Hit("payee-funding-broadcast")
		effs, err := s.p.FundingAccepted()
		return s.exec(ctx, cancel, effs, err)
	case channel.PersistChannel:
		r := ef.Record
		return a.Store.Insert(ctx, store.Record{Role: store.Payee, Peer: s.peer, KeyIndex: s.keyIndex, Channel: r.Channel, FundingTx: r.FundingTx})
	case channel.Opened:
		s.log = s.log.With("channel", ef.Channel.ID())
		s.result.ChannelID, s.result.PaidSat = ef.Channel.ID(), ef.PaidSat
		s.release = a.claimChannel(s, ef.Channel.ID(), cancel)
		s.best.Store(ef.PaidSat)
		s.log.Info("channel open", "capacity_sat", ef.Channel.CapacitySat, "paid_sat", ef.PaidSat)
		if s.watch != nil {
			// The meter counts from the open: what a resumed channel held
			// before this call is not this call's.
			base := ef.PaidSat
			s.best.Store(0)
			s.paidBase = base
			s.watch()
		}
	case channel.PersistPayment:
		if err := a.Store.PayeePayment(ctx, ef.ChannelID, ef.PaidSat, ef.Sig); err != nil {
			return fmt.Errorf("storing payment of %d: %w", ef.PaidSat, err)
		}
		failpoint.Hit("payee-payment-stored")
		s.result.PaidSat = ef.PaidSat
		s.best.Store(ef.PaidSat - s.paidBase)
		if a.OnPayment != nil {
			a.OnPayment(ef.ChannelID, ef.PaidSat)
		}
	case channel.SettleRequested:
		txid := ""
		if ef.PaidSat > 0 {
			var err error
			if txid, err = a.settleOrLater(ctx, ef.ChannelID); err != nil {
				return err
			}
		}
		s.result.SettlementTxID = txid
		effs, err := s.p.Settled(txid)
		return s.exec(ctx, cancel, effs, err)
	case channel.Closed:
		s.log.Info("channel closed", "paid_sat", ef.PaidSat, "settlement", ef.SettlementTxID)
	case channel.PeerError:
		s.log.Warn("payer refused", "code", ef.Msg.Code, "reason", ef.Msg.Reason)
		return fmt.Errorf("%w: %s: %s", channel.ErrPeer, ef.Msg.Code, ef.Msg.Reason)
	}
	return nil
}

type claim struct {
	cancel context.CancelFunc
	taken  bool // a newer session took the channel over
}

// claim makes this session the only one serving a channel: a session
// already serving it is ended (bitcoinj's rule on resume).
func (a *Payee) claimChannel(s *payeeSession, id string, cancel context.CancelFunc) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active == nil {
		a.active = map[string]*claim{}
	}
	if old := a.active[id]; old != nil {
		a.log().Info("channel taken over by a new session", "channel", id)
		old.taken = true
		old.cancel()
	}
	c := &claim{cancel: cancel}
	a.active[id] = c
	s.claim = c
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.active[id] == c { // not a newer session's
			delete(a.active, id)
		}
	}
}

// acceptFunding applies the zero-conf policy: broadcast the funding (the
// payer did too; twice is harmless), then wait until the node has it in its
// mempool (capacity up to ZeroConfMaxSat) or until it has MinConf
// confirmations.
func (a *Payee) acceptFunding(ctx context.Context, ch *channel.Channel, txid string, broadcast func(context.Context) error) error {
	if err := broadcast(ctx); err != nil {
		return fmt.Errorf("funding refused by the node: %w", err)
	}
	minConf := orDefault(a.MinConf, DefaultMinConf)
	if ch.CapacitySat <= orDefault(a.ZeroConfMaxSat, DefaultZeroConfMaxSat) {
		minConf = 0
	}
	for {
		st, err := a.Chain.TxStatus(ctx, ch.Outpoint.Hash)
		if err != nil {
			return err
		}
		if st.Known && st.Confirmations >= minConf {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(orDefault(a.Poll, time.Second)):
		}
	}
}

// Settle broadcasts the settlement of a stored channel's best payment,
// with a fee chosen now, and returns its txid. A channel whose pool is
// already spent (settled before, or refunded by the payer) is recognised,
// not retried.
func (a *Payee) Settle(ctx context.Context, id string) (string, error) {
	rec, err := a.Store.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if rec.Role != store.Payee {
		return "", fmt.Errorf("%s is not a payee channel", id)
	}
	if txid, done, err := Reconcile(ctx, a.Chain, a.Store, rec); err != nil || done {
		return txid, err
	}
	if rec.BestSat == 0 {
		return "", fmt.Errorf("%w: nothing was paid on %s", channel.ErrSettlementDust, id)
	}
	key, err := a.Wallet.ChannelKeyAt(rec.KeyIndex)
	if err != nil {
		return "", err
	}
	payout, err := a.PayoutScript()
	if err != nil {
		return "", err
	}
	rate, err := a.Chain.FeeRate(ctx, orDefault(a.FeeTarget, 6))
	if err != nil {
		return "", err
	}
	fee, err := rec.Channel.SettlementFee(rec.BestSat, payout, rate)
	if err != nil {
		return "", err
	}
	tx, err := rec.Channel.SettlementTx(key, rec.BestSat, rec.BestSig, channel.Settlement{PayoutScript: payout, FeeSat: fee})
	if err != nil {
		return "", err
	}
	txid := tx.TxHash().String()
	if err := a.Store.SetState(ctx, id, store.StateClosing, txid); err != nil {
		return "", err
	}
	switch err := a.Chain.Broadcast(ctx, tx); {
	case err == nil, errors.Is(err, chain.ErrAlreadyKnown):
		a.log().Info("settlement broadcast", "channel", id, "txid", txid, "paid_sat", rec.BestSat, "fee_sat", fee)
		return txid, nil
	case errors.Is(err, chain.ErrConflict):
		rec.CloseTxID = txid
		other, _, rerr := Reconcile(ctx, a.Chain, a.Store, rec)
		if rerr != nil {
			return "", rerr
		}
		return other, fmt.Errorf("pool already spent by %s", other)
	default:
		return "", fmt.Errorf("settlement refused: %w", err)
	}
}

// DefaultSettleMargin is two hours of blocks.
const DefaultSettleMargin = 12

// Recover brings the payee's channels in line with the chain after a start
// (or a crash): channels spent on chain are recognised, and every paid
// channel within the safety margin of its expiry is settled now (after
// the expiry the payer could take its refund). Channels further out stay
// open for the payer to resume; WatchExpiries keeps checking them.
func (a *Payee) Recover(ctx context.Context) error {
	recs, err := a.Store.List(ctx, store.StateOpen, store.StateClosing)
	if err != nil {
		return err
	}
	tip, err := a.Chain.TipHeight(ctx)
	if err != nil {
		return err
	}
	margin := orDefault(a.SettleMargin, DefaultSettleMargin)
	var errs []error
	for _, rec := range recs {
		if rec.Role != store.Payee {
			continue
		}
		if _, done, err := Reconcile(ctx, a.Chain, a.Store, rec); err != nil || done {
			errs = append(errs, err)
			continue
		}
		due := uint32(tip)+margin >= rec.Channel.ExpiryHeight
		// A settlement that the node lost (or never got) is sent again.
		if rec.BestSat > 0 && (due || rec.State == store.StateClosing) {
			if _, err := a.Settle(ctx, rec.ID()); err != nil {
				errs = append(errs, fmt.Errorf("settling %s: %w", rec.ID(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// WatchExpiries runs Recover every poll until ctx ends: the timers of
// every open channel, re-armed from the store after a restart.
func (a *Payee) WatchExpiries(ctx context.Context, poll time.Duration) error {
	for {
		if err := a.Recover(ctx); err != nil {
			a.log().Warn("recovery", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
