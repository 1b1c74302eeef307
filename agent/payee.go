package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/failpoint"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sat"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/txbuild"
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
	// DefaultHandshakeTimeout bounds a session that has not opened a
	// channel yet (terms sent, refund signed, resume asked): a payer
	// cannot keep the payee waiting, or let the refund window go stale.
	DefaultHandshakeTimeout = time.Minute
	// DefaultMaxPending bounds the sessions not yet open at once.
	DefaultMaxPending = 64
	// DefaultMaxPaymentsPerSec and DefaultPaymentBurst bound a session's
	// payments, as a token bucket (a flood of tiny valid steps costs the
	// payee a verification and a write each); a call pays once a second.
	DefaultMaxPaymentsPerSec = 20
	DefaultPaymentBurst      = 100
	// DefaultFeeHeadroom multiplies the fee rate of the moment when the
	// minimum first payment is derived, so a settlement stays above dust
	// if fees rise during the call.
	DefaultFeeHeadroom = 2
)

// Session ends the payee causes, matched with errors.Is.
var (
	// ErrExpiryNear: the channel's refund lock is within the settle margin;
	// the session ends and the channel is settled.
	ErrExpiryNear = errors.New("refund lock time near: channel settled")
	// ErrFundingGone: the unconfirmed funding left the node's mempool
	// (replaced or double spent); nothing more is served on it.
	ErrFundingGone = errors.New("funding transaction replaced or double spent")
	// ErrFundingTimeout: the funding did not get its confirmations
	// within the blocks allowed (see acceptFunding).
	ErrFundingTimeout = errors.New("funding not confirmed in time")
	// ErrHandshakeTimeout: the channel was not open in time.
	ErrHandshakeTimeout = errors.New("channel not opened in time")
	// ErrBusy: too many sessions are opening channels at once.
	ErrBusy = errors.New("too many channels being opened")
	// ErrPaymentFlood: the payer sent payments faster than allowed.
	ErrPaymentFlood = errors.New("payments too frequent")
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
	// MinLockAheadBlocks: a refund is signed, and a funding accepted, only
	// while the refund's lock time is at least this many blocks above the
	// tip (default three quarters of MinExpiryBlocks: some blocks of
	// slack between the terms and the refund request, never a window a
	// payer let go stale). It is kept above SettleMargin.
	MinLockAheadBlocks uint32
	// HandshakeTimeout, MaxPending and MaxPaymentsPerSec bound what a
	// payer can make the payee hold (defaults above).
	HandshakeTimeout  time.Duration
	MaxPending        int
	MaxPaymentsPerSec int
	PaymentBurst      int
	// FeeHeadroom: see DefaultFeeHeadroom.
	FeeHeadroom int64

	mu      sync.Mutex
	payout  []byte
	active  map[string]*claim // channel id -> the session serving it
	pending int               // sessions not open yet
	tipVal  uint32            // cached tip (see tip)
	tipAt   time.Time
	tipWait chan struct{} // closed when the tip asked meanwhile is known

	fundings fundingWatch // unconfirmed fundings of open sessions (fundwatch.go)
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
	minPay, err := a.minPayment(ctx, payout)
	if err != nil {
		return channel.Terms{}, err
	}
	return channel.Terms{
		PayeeKey: key, PriceSatPerMin: a.PriceSatPerMin, PayoutScript: payout,
		MinChannelSat:   max(orDefault(a.MinChannelSat, DefaultMinChannelSat), minPay),
		MinExpiryHeight: uint32(tip) + orDefault(a.MinExpiryBlocks, DefaultMinExpiryBlocks),
		MaxExpiryHeight: uint32(tip) + orDefault(a.MaxExpiryBlocks, DefaultMaxExpiryBlocks),
		MinPaymentSat:   minPay,
		MinStepSat:      orDefault(a.MinStepSat, 1),
	}, nil
}

// minPayment is the smallest first payment the payee accepts: the
// configured minimum, raised to what a settlement at the fee rate of the
// moment (times FeeHeadroom) needs to leave a payout above dust, so that
// no call is served for a state that could never be cashed.
func (a *Payee) minPayment(ctx context.Context, payout []byte) (int64, error) {
	rate, err := a.Chain.FeeRate(ctx, orDefault(a.FeeTarget, 6))
	if err != nil {
		return 0, err
	}
	r, err := sat.MulDivCeil(int64(rate), orDefault(a.FeeHeadroom, DefaultFeeHeadroom), 1)
	if err != nil {
		return 0, err
	}
	floor, err := channel.MinPaymentFor(payout, txbuild.FeeRate(r))
	if err != nil {
		return 0, err
	}
	return max(orDefault(a.MinPaymentSat, DefaultMinPaymentSat), floor), nil
}

// minLockAhead is MinLockAheadBlocks or its default.
func (a *Payee) minLockAhead() uint32 {
	minExp := orDefault(a.MinExpiryBlocks, DefaultMinExpiryBlocks)
	return orDefault(a.MinLockAheadBlocks, max(minExp-minExp/4, 1))
}

// settleMargin is SettleMargin or its default, kept below the minimum lock
// distance (a channel must not be due to settle the moment it opens).
func (a *Payee) settleMargin() uint32 {
	m := orDefault(a.SettleMargin, DefaultSettleMargin)
	if ahead := a.minLockAhead(); m >= ahead {
		m = ahead - 1
	}
	return m
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
	unadmit  func()
	cancel   context.CancelCauseFunc
	opened   chan struct{} // closed once the channel is open
	// fundingWait is set while the funding waits for confirmations.
	fundingWait atomic.Bool
	payments    payRate
	resumed     bool // the channel was resumed, not opened, in this session
	// earliestLock is the earliest refund lock the terms offered: it
	// bounds the wait for a funding's confirmations (acceptFunding).
	earliestLock uint32
	// unconfirmed is a resumed channel's funding while it has no
	// confirmation: watched like a new zero-conf funding.
	unconfirmed *wire.MsgTx
	// early holds a message (or the end of the connection) read while the
	// funding waited, for the loop to take next.
	early chan received
}

// payRate is a session's payment token bucket.
type payRate struct {
	at     time.Time
	tokens float64
}

// Serve runs one payer session on conn until it closes, the payer goes
// away, or ctx ends, and closes conn. A session that ends with the channel
// open and paid settles it unless KeepOpen.
func (a *Payee) Serve(ctx context.Context, conn Conn, peer string) (*PayeeResult, error) {
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(context.Canceled) }
	defer cancel()
	defer conn.Close()
	// Admission first: a refused session costs no key and no chain call.
	if !a.admit() {
		a.log().Warn("session refused: too many channels being opened", "component", "payee", "peer", peer, "max", orDefault(a.MaxPending, DefaultMaxPending))
		e := &paywire.Error{Code: paywire.CodeChannelBusy, Reason: "too many channels being opened; try again later"}
		e.SetVersion(paywire.Version1)
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		sendMsg(sctx, conn, e)
		scancel()
		return nil, ErrBusy
	}
	admitted := true
	unadmit := func() {
		if admitted {
			admitted = false
			a.mu.Lock()
			a.pending--
			a.mu.Unlock()
		}
	}
	defer unadmit()
	key, idx, err := a.Wallet.ChannelKey()
	if err != nil {
		return nil, err
	}
	terms, err := a.Terms(ctx, key.PubKey())
	if err != nil {
		return nil, err
	}
	p, err := channel.NewPayee(channel.PayeeConfig{Key: key, Terms: terms, MinLockAhead: a.minLockAhead()})
	if err != nil {
		return nil, err
	}
	s := &payeeSession{a: a, conn: conn, p: p, keyIndex: idx, peer: peer, cancel: cancelCause, opened: make(chan struct{}),
		log: a.log().With("component", "payee", "peer", peer), earliestLock: terms.MinExpiryHeight}
	go func() {
		// Until the channel is open, the session is on a clock.
		select {
		case <-s.opened:
		case <-ctx.Done():
		case <-time.After(orDefault(a.HandshakeTimeout, DefaultHandshakeTimeout)):
			// A funding waiting for its confirmations is bounded by
			// acceptFunding itself (stale window, funding gone).
			if !s.fundingWait.Load() {
				s.log.Warn("channel not opened in time: session ended")
				cancelCause(ErrHandshakeTimeout)
			}
		}
	}()
	defer func() {
		if s.release != nil {
			s.release()
		}
	}()
	if a.Metering != nil {
		s.watch = func() { go s.watchPayments(ctx, *a.Metering, &s.best, cancelCause) }
	}
	s.unadmit = unadmit
	err = s.loop(ctx, cancel)
	cause := context.Cause(ctx)
	if ch := s.p.Channel(); ch != nil && errors.Is(cause, ErrExpiryNear) {
		s.notify(ctx, ch.ID(), paywire.CodeChannelClosed, fmt.Sprintf("refund lock %d is near: the channel is settled", ch.ExpiryHeight))
	}
	for _, c := range []error{ErrPaymentLate, ErrExpiryNear, ErrFundingGone, ErrHandshakeTimeout} {
		if errors.Is(cause, c) {
			err = c
		}
	}
	a.mu.Lock()
	takenOver := s.claim != nil && s.claim.taken
	a.mu.Unlock()
	due := errors.Is(cause, ErrExpiryNear)
	if s.p.Channel() != nil && s.p.BestSat() > 0 && (s.p.State() == channel.PayeeOpen || s.p.State() == channel.PayeeFailed && s.result.ChannelID != "") &&
		(!a.KeepOpen || due) && !takenOver && !errors.Is(cause, ErrFundingGone) {
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
		b, err := s.recv(ctx)
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
		switch m.(type) {
		case *paywire.RefundRequest, *paywire.Funded:
			// Refund lock times are checked against the tip of now.
			tip, err := s.a.Chain.TipHeight(ctx)
			if err != nil {
				return err
			}
			s.p.ObserveTip(uint32(tip))
		case *paywire.Pay:
			metricPaymentsReceived.Inc()
			if err := s.checkRate(ctx); err != nil {
				metricPaymentsRefused.WithLabelValues("flood").Inc()
				return err
			}
			start := time.Now()
			effs, herr := s.p.Handle(m)
			observeSince(metricVerifySeconds, start)
			if herr != nil {
				metricPaymentsRefused.WithLabelValues(refusedReason(herr)).Inc()
			}
			if err := s.exec(ctx, cancel, effs, herr); err != nil {
				return err
			}
			continue
		}
		effs, herr := s.p.Handle(m)
		if err := s.exec(ctx, cancel, effs, herr); err != nil {
			return err
		}
	}
}

// received is the outcome of one Conn.Recv.
type received struct {
	b   []byte
	err error
}

// recv returns the next message from the payer: one already read while
// the funding waited (see waitFunding), or a new one.
func (s *payeeSession) recv(ctx context.Context) ([]byte, error) {
	if s.early != nil {
		r := <-s.early
		s.early = nil
		return r.b, r.err
	}
	return s.conn.Recv(ctx)
}

// errPayerLeft ends a funding wait whose payer hung up (or spoke out of
// turn: it has nothing to say until the channel is open).
var errPayerLeft = errors.New("payer gone while its funding waited")

// waitFunding runs acceptFunding while reading the connection: a payer
// that hangs up (or sends anything: nothing is due from it before open)
// ends the wait, instead of leaving the session, its pending slot and its
// call waiting until the funding confirms or the refund window goes stale.
// What was read is handed to the session's loop (recv).
func (s *payeeSession) waitFunding(ctx context.Context, ef channel.FundingReceived, broadcast func(context.Context) error) (bool, error) {
	wctx, wcancel := context.WithCancelCause(ctx)
	defer wcancel(nil)
	got := make(chan received, 1)
	go func() {
		b, err := s.conn.Recv(ctx)
		got <- received{b, err}
	}()
	s.early = got
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case r := <-got:
			got <- r // for the loop
			wcancel(errPayerLeft)
		case <-stop:
		}
	}()
	zeroConf, err := s.a.acceptFunding(wctx, ef.Channel, ef.Tx, s.earliestLock, s.p.ObserveTip, broadcast)
	if err != nil && errors.Is(context.Cause(wctx), errPayerLeft) && ctx.Err() == nil {
		s.log.Warn("payer gone while its funding waited: session ended", "channel", ef.Channel.ID())
		return false, errPayerLeft
	}
	return zeroConf, err
}

// checkRate ends a session whose payer sends more payments per second than
// MaxPaymentsPerSec.
func (s *payeeSession) checkRate(ctx context.Context) error {
	rate, burst := orDefault(s.a.MaxPaymentsPerSec, DefaultMaxPaymentsPerSec), orDefault(s.a.PaymentBurst, DefaultPaymentBurst)
	now, b := time.Now(), &s.payments
	if b.at.IsZero() {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.at).Seconds()*float64(rate))
	}
	b.at = now
	if b.tokens < 1 {
		s.log.Warn("payer floods payments: session ended", "limit_per_s", rate, "burst", burst)
		s.refuse(ctx, paywire.CodeBadPayment, fmt.Sprintf("more than %d payments a second (burst %d)", rate, burst))
		return ErrPaymentFlood
	}
	b.tokens--
	return nil
}

// refuse tells the payer why the session ends (best effort). Only the
// session's own goroutine calls it; others use notify.
func (s *payeeSession) refuse(ctx context.Context, code, reason string) {
	id := ""
	if ch := s.p.Channel(); ch != nil {
		id = ch.ID()
	}
	s.notify(ctx, id, code, reason)
}

// notify sends an error message about channel id (best effort).
func (s *payeeSession) notify(ctx context.Context, id, code, reason string) {
	e := &paywire.Error{Code: code, Reason: reason, ChannelID: id}
	e.SetVersion(paywire.Version1)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	s.send(sctx, e)
}

// admit counts a session that has not opened a channel yet, or refuses it
// when MaxPending are already opening.
func (a *Payee) admit() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending >= orDefault(a.MaxPending, DefaultMaxPending) {
		return false
	}
	a.pending++
	return true
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
		sctx := ctx
		if _, ack := ef.Msg.(*paywire.Ack); ack {
			// The payment is stored, so it will be settled: the payer is
			// told even if the session is ending meanwhile (expiry near).
			var scancel context.CancelFunc
			sctx, scancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer scancel()
		}
		if err := s.send(sctx, ef.Msg); err != nil {
			return err
		}
		switch ef.Msg.(type) {
		case *paywire.RefundSigned:
			failpoint.Hit("payee-refund-signed")
		case *paywire.Ack:
			metricPaymentsAcked.Inc()
			failpoint.Hit("payee-acked")
		}
	case channel.ResumeRequested:
		rec, err := a.Store.Get(ctx, ef.ChannelID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			// Not "unknown": a payer told unknown_channel gives the
			// channel up to its refund. This is a failure to retry.
			s.log.Error("resume: reading the store", "channel", ef.ChannelID, "err", err)
			s.refuse(ctx, paywire.CodeInternal, "temporary failure; try again later")
			return fmt.Errorf("resume of %s: %w", ef.ChannelID, err)
		}
		tip, terr := a.Chain.TipHeight(ctx)
		if terr != nil {
			s.refuse(ctx, paywire.CodeInternal, "temporary failure; try again later")
			return terr
		}
		var effs []channel.Effect
		var herr error
		switch {
		case err != nil:
			effs, herr = s.p.RefuseResume("unknown channel")
		case rec.Role != store.Payee || rec.State != store.StateOpen:
			effs, herr = s.p.RefuseResume(fmt.Sprintf("channel is %s", rec.State))
		case uint32(tip)+a.settleMargin() >= rec.Channel.ExpiryHeight:
			effs, herr = s.p.RefuseResume(fmt.Sprintf("refund lock %d is within %d blocks of the tip %d: the channel is being settled", rec.Channel.ExpiryHeight, a.settleMargin(), tip))
		default:
			// A channel opened on an unconfirmed funding is only as good
			// as that funding: one double spent meanwhile is refused, and
			// one still unconfirmed is watched by this session too.
			st, serr := a.Chain.TxStatus(ctx, rec.Channel.Outpoint.Hash)
			if serr != nil {
				s.refuse(ctx, paywire.CodeInternal, "temporary failure; try again later")
				return serr
			}
			if !st.Known && !a.rebroadcast(ctx, rec.FundingTx) {
				s.log.Warn("resume refused: the channel's funding is neither confirmed nor in the mempool", "channel", ef.ChannelID)
				effs, herr = s.p.RefuseResume("the funding transaction is neither confirmed nor in the mempool (double spent?)")
				break
			}
			if !st.Known || st.Confirmations == 0 {
				s.unconfirmed = rec.FundingTx
			}
			key, kerr := a.Wallet.ChannelKeyAt(rec.KeyIndex)
			if kerr != nil {
				return kerr
			}
			challenge := make([]byte, paywire.ChallengeSize)
			if _, err := rand.Read(challenge); err != nil {
				return err
			}
			s.keyIndex, s.peer, s.resumed = rec.KeyIndex, rec.Peer, true
			effs, herr = s.p.Resume(rec.PayeeRecord(), key, challenge)
		}
		return s.exec(ctx, cancel, effs, herr)
	case channel.FundingReceived:
		s.fundingWait.Store(true)
		zeroConf, err := s.waitFunding(ctx, ef, func(c context.Context) error {
			err := a.Chain.Broadcast(c, ef.Tx)
			if errors.Is(err, chain.ErrAlreadyKnown) {
				return nil
			}
			return err
		})
		if err != nil {
			if errors.Is(err, ErrFundingGone) || errors.Is(err, ErrFundingTimeout) || errors.Is(err, channel.ErrRefundLockTooNear) {
				s.log.Warn("funding not accepted", "err", err)
				s.refuse(ctx, paywire.CodeBadFunding, err.Error())
			}
			return err
		}
		failpoint.Hit("payee-funding-broadcast")
		tip, err := a.Chain.TipHeight(ctx)
		if err != nil {
			return err
		}
		s.p.ObserveTip(uint32(tip))
		effs, herr := s.p.FundingAccepted()
		if herr == nil && zeroConf {
			// Served before it confirms: watch it until it does.
			go s.watchFunding(ctx, ef.Tx, ef.Channel.ID())
		}
		return s.exec(ctx, cancel, effs, herr)
	case channel.PersistChannel:
		r := ef.Record
		return a.Store.Insert(ctx, store.Record{Role: store.Payee, Peer: s.peer, KeyIndex: s.keyIndex, Channel: r.Channel, FundingTx: r.FundingTx})
	case channel.Opened:
		s.log = s.log.With("channel", ef.Channel.ID())
		s.result.ChannelID, s.result.PaidSat = ef.Channel.ID(), ef.PaidSat
		release, prev := a.claimChannel(s, ef.Channel.ID())
		s.release = release
		if s.resumed {
			// The channel was read when the resume was asked; the session
			// serving it then may have taken payments since (paid for its
			// own call's time). Once it has let the channel go, read the
			// channel again: this call counts from what is held now.
			if err := s.resync(ctx, ef.Channel.ID(), prev); err != nil {
				return err
			}
			ef.PaidSat = s.p.BestSat()
			s.result.PaidSat = ef.PaidSat
		}
		close(s.opened)
		if s.unadmit != nil {
			s.unadmit()
		}
		s.best.Store(ef.PaidSat)
		s.log.Info("channel open", "capacity_sat", ef.Channel.CapacitySat, "paid_sat", ef.PaidSat, "expiry_height", ef.Channel.ExpiryHeight)
		go s.watchExpiry(ctx, ef.Channel.ID(), ef.Channel.ExpiryHeight)
		if s.unconfirmed != nil {
			// A resumed channel whose funding has not confirmed yet.
			go s.watchFunding(ctx, s.unconfirmed, ef.Channel.ID())
		}
		if s.watch != nil {
			// The meter counts from the open: what a resumed channel held
			// before this call is not this call's.
			base := ef.PaidSat
			s.best.Store(0)
			s.paidBase = base
			s.watch()
		}
	case channel.PersistPayment:
		start := time.Now()
		err := a.Store.PayeePayment(ctx, ef.ChannelID, ef.PaidSat, ef.Sig)
		observeSince(metricStoreSeconds, start)
		if err != nil {
			metricPaymentsRefused.WithLabelValues(refusedReason(err)).Inc()
			if errors.Is(err, store.ErrNotStored) {
				// The channel is being settled (or holds a higher payment
				// stored by another session): nothing more is taken.
				s.log.Warn("payment not stored (channel closing, or a higher payment held): not acknowledged", "paid_sat", ef.PaidSat)
				s.refuse(ctx, paywire.CodeChannelClosed, "the channel is being settled")
			} else {
				s.refuse(ctx, paywire.CodeInternal, "payment not stored; not acknowledged")
			}
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
	default:
		return fmt.Errorf("payee: effect %T not handled", ef)
	}
	return nil
}

// watchExpiry ends the session once the chain comes within the settle
// margin of the channel's refund lock: the session then settles on its way
// out (a call longer than the window cannot go on unsettled, or the payer
// could take its refund).
func (s *payeeSession) watchExpiry(ctx context.Context, id string, lock uint32) {
	for {
		tip, err := s.a.tip(ctx)
		if err == nil && uint64(tip)+uint64(s.a.settleMargin()) >= uint64(lock) {
			// The session tells the payer on its way out (Serve), after
			// the ack of a payment it was storing.
			s.log.Warn("refund lock near: ending the session to settle", "tip", tip, "lock", lock)
			s.cancel(ErrExpiryNear)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(orDefault(s.a.Poll, time.Second)):
		}
	}
}

// tip is the chain's height, asked at most once per Poll for all sessions:
// while one session asks the node, the others wait for its answer rather
// than ask too (a thousand sessions whose watches wake in the same second
// make one request, not a thousand).
func (a *Payee) tip(ctx context.Context) (uint32, error) {
	for {
		a.mu.Lock()
		if !a.tipAt.IsZero() && time.Since(a.tipAt) < orDefault(a.Poll, time.Second) {
			t := a.tipVal
			a.mu.Unlock()
			return t, nil
		}
		if wait := a.tipWait; wait != nil {
			a.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		wait := make(chan struct{})
		a.tipWait = wait
		a.mu.Unlock()
		t, err := a.Chain.TipHeight(ctx)
		a.mu.Lock()
		if err == nil {
			a.tipVal, a.tipAt = uint32(t), time.Now()
		}
		a.tipWait = nil
		close(wait)
		a.mu.Unlock()
		if err != nil {
			return 0, err
		}
		return uint32(t), nil
	}
}

// watchFunding follows a funding accepted before it confirmed: if it leaves
// the node's mempool without confirming (replaced, or its inputs double
// spent), the session ends at once; once it has a confirmation the watch
// stops.
func (s *payeeSession) watchFunding(ctx context.Context, funding *wire.MsgTx, id string) {
	outcome, stop := s.a.watchFundingTx(funding)
	defer stop()
	select {
	case <-ctx.Done():
	case confirmed := <-outcome:
		if confirmed {
			return
		}
		s.log.Warn("unconfirmed funding left the mempool: session ended", "txid", funding.TxHash())
		s.cancel(ErrFundingGone)
		s.notify(ctx, id, paywire.CodeBadFunding, "funding transaction replaced or double spent")
	}
}

type claim struct {
	cancel context.CancelCauseFunc // ends the session, with a cause
	taken  bool                    // a newer session took the channel over
	done   chan struct{}           // closed when the session lets the channel go
}

// claimChannel makes this session the only one serving a channel: a
// session already serving it is ended (bitcoinj's rule on resume); prev is
// closed once that one has let the channel go.
func (a *Payee) claimChannel(s *payeeSession, id string) (release func(), prev <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active == nil {
		a.active = map[string]*claim{}
	}
	if old := a.active[id]; old != nil {
		a.log().Info("channel taken over by a new session", "channel", id)
		old.taken = true
		old.cancel(context.Canceled)
		prev = old.done
	}
	c := &claim{cancel: s.cancel, done: make(chan struct{})}
	a.active[id] = c
	s.claim = c
	metricOpenChannels.Inc()
	return func() {
		metricOpenChannels.Dec()
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.active[id] == c { // not a newer session's
			delete(a.active, id)
		}
		close(c.done)
	}, prev
}

// resync waits until the session that served a resumed channel before
// (prev, if any) has let it go, then reads the channel again: the best
// payment held may have grown since the resume was asked, and the channel
// may have started closing.
func (s *payeeSession) resync(ctx context.Context, id string, prev <-chan struct{}) error {
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rec, err := s.a.Store.Get(ctx, id)
	if err != nil {
		s.refuse(ctx, paywire.CodeInternal, "temporary failure; try again later")
		return fmt.Errorf("resume of %s: %w", id, err)
	}
	if rec.State != store.StateOpen {
		s.log.Warn("resumed channel closed meanwhile", "state", rec.State)
		s.refuse(ctx, paywire.CodeChannelClosed, fmt.Sprintf("the channel is %s", rec.State))
		return fmt.Errorf("%w: %s is %s", channel.ErrChannelClosed, id, rec.State)
	}
	s.p.RaiseBest(rec.BestSat, rec.BestSig)
	return nil
}

// acceptFunding applies the zero-conf policy: broadcast the funding (the
// payer did too; twice is harmless), then wait until the node has it in its
// mempool, or until it has MinConf confirmations. A funding is taken from
// the mempool (zero-conf) only when its capacity is at most ZeroConfMaxSat,
// it does not signal replaceability (BIP125: an input sequence below
// 0xfffffffe) and every transaction it spends is confirmed (an unconfirmed
// parent could itself be replaced, taking the funding with it). Otherwise
// it waits for at least one confirmation. While it waits, the refund's
// lock must stay far enough ahead (observe is given each new tip); a
// funding that leaves the mempool ends the wait. The wait is also bounded
// as if the payer had chosen the earliest lock the terms offered
// (earliest, plus a block per confirmation beyond the first): the call is
// up and unmetered while the funding waits, and a payer choosing a far
// lock must not make a funding that never confirms hold it for days.
// zeroConf reports whether the funding was accepted unconfirmed (the
// session then keeps watching it).
func (a *Payee) acceptFunding(ctx context.Context, ch *channel.Channel, tx *wire.MsgTx, earliest uint32, observe func(uint32), broadcast func(context.Context) error) (zeroConf bool, err error) {
	if err := broadcast(ctx); err != nil {
		return false, fmt.Errorf("funding refused by the node: %w", err)
	}
	minConf := max(orDefault(a.MinConf, DefaultMinConf), 1)
	why := "above the zero-conf limit"
	if ch.CapacitySat <= orDefault(a.ZeroConfMaxSat, DefaultZeroConfMaxSat) {
		why, err = a.zeroConfRisk(ctx, tx)
		if err != nil {
			return false, err
		}
		if why == "" {
			minConf = 0
		}
	}
	if minConf > 0 {
		a.log().Info("funding: waiting for confirmations", "channel", ch.ID(), "confirmations", minConf, "why", why)
	}
	seen := false
	for {
		st, err := a.Chain.TxStatus(ctx, ch.Outpoint.Hash)
		if err != nil {
			return false, err
		}
		if st.Known && st.Confirmations >= minConf {
			return minConf == 0 && st.Confirmations == 0, nil
		}
		if seen && !st.Known && !a.rebroadcast(ctx, tx) {
			return false, ErrFundingGone
		}
		seen = seen || st.Known
		tip, err := a.Chain.TipHeight(ctx)
		if err != nil {
			return false, err
		}
		if uint64(tip)+uint64(a.minLockAhead()) > uint64(ch.ExpiryHeight) {
			return false, fmt.Errorf("%w: the funding did not confirm before the refund window went stale (tip %d, lock %d)", channel.ErrRefundLockTooNear, tip, ch.ExpiryHeight)
		}
		if by := uint64(earliest) + uint64(minConf-1); uint64(tip)+uint64(a.minLockAhead()) > by {
			return false, fmt.Errorf("%w: tip %d; a funding must be accepted while the tip is at most %d", ErrFundingTimeout, tip, by-uint64(a.minLockAhead()))
		}
		observe(uint32(tip))
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(orDefault(a.Poll, time.Second)):
		}
	}
}

// rebroadcast sends a funding the node no longer knows again: true if the
// node takes it back (it had lost its mempool), false if it conflicts with
// a spend of its inputs (replaced or double spent).
func (a *Payee) rebroadcast(ctx context.Context, tx *wire.MsgTx) bool {
	err := a.Chain.Broadcast(ctx, tx)
	return err == nil || errors.Is(err, chain.ErrAlreadyKnown)
}

// zeroConfRisk says why a funding cannot be trusted unconfirmed, or "".
func (a *Payee) zeroConfRisk(ctx context.Context, tx *wire.MsgTx) (string, error) {
	for _, in := range tx.TxIn {
		if in.Sequence < wire.MaxTxInSequenceNum-1 {
			return "it signals replaceability (BIP125)", nil
		}
	}
	for _, in := range tx.TxIn {
		st, err := a.Chain.TxStatus(ctx, in.PreviousOutPoint.Hash)
		if err != nil {
			return "", err
		}
		if !st.Known || st.Confirmations == 0 {
			return "it spends an unconfirmed transaction", nil
		}
	}
	return "", nil
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
	// From here no payment is stored (so none acknowledged) on this
	// channel, by this process or another sharing the store: the
	// settlement carries the last best payment there will ever be.
	if rec, err = a.Store.StartClosing(ctx, id); err != nil {
		return "", err
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
	if errors.Is(err, channel.ErrSettlementDust) {
		// Fees rose beyond the headroom the minimum payment had. Until
		// the settlement is due, wait for them to fall (Recover retries);
		// once it is due, the payer's refund comes next: settle at the
		// largest fee that leaves a payout, if the node relays it.
		if fee, err = a.fallbackFee(ctx, rec, payout); err != nil {
			return "", err
		}
		tx, err = rec.Channel.SettlementTx(key, rec.BestSat, rec.BestSig, channel.Settlement{PayoutScript: payout, FeeSat: fee})
	}
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
		metricSettlements.Inc()
		metricSettlementFees.Add(float64(fee))
		return txid, nil
	case errors.Is(err, chain.ErrConflict):
		rec.CloseTxID = txid
		other, _, rerr := Reconcile(ctx, a.Chain, a.Store, rec)
		if rerr != nil {
			return "", rerr
		}
		if other == "" {
			// The node knows no spend, yet refuses an input: it does not
			// know the funding (lost from its mempool, or never seen).
			return "", fmt.Errorf("settlement refused: the node does not know the funding %s (it will be tried again): %w", rec.Channel.Outpoint.Hash, err)
		}
		return other, fmt.Errorf("pool already spent by %s", other)
	default:
		return "", fmt.Errorf("settlement refused: %w", err)
	}
}

// fallbackFee is the fee of a due settlement that cannot pay the fee
// estimate: all of the payment but the smallest payout above dust, if that
// is at least the node's relay minimum.
func (a *Payee) fallbackFee(ctx context.Context, rec *store.Record, payout []byte) (int64, error) {
	tip, err := a.Chain.TipHeight(ctx)
	if err != nil {
		return 0, err
	}
	if uint32(tip)+a.settleMargin() < rec.Channel.ExpiryHeight {
		return 0, fmt.Errorf("%w: %d sat cannot pay the fee estimate; settlement waits for lower fees", channel.ErrSettlementDust, rec.BestSat)
	}
	least := int64(1)
	for txbuild.IsDust(least, payout) {
		least++
	}
	floor, err := rec.Channel.SettlementFee(rec.BestSat, payout, txbuild.FeeRate(txbuild.DustRelayFee))
	if err != nil {
		return 0, err
	}
	fee := rec.BestSat - least
	if fee < floor {
		return 0, fmt.Errorf("%w: %d sat cannot pay the relay minimum fee %d", channel.ErrSettlementDust, rec.BestSat, floor)
	}
	a.log().Warn("fees above the estimate the payment allows: settling at a lower fee", "channel", rec.ID(), "paid_sat", rec.BestSat, "fee_sat", fee)
	return fee, nil
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
	margin := a.settleMargin()
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
		if due {
			// A session still serving the channel is ended first, and
			// settles it on its way out; Settle below then finds it
			// closing or spent.
			a.endSessionDue(ctx, rec, uint32(tip))
		}
		// A settlement that the node lost (or never got) is sent again.
		if rec.BestSat > 0 && (due || rec.State == store.StateClosing) {
			_, err := a.Settle(ctx, rec.ID())
			switch {
			case errors.Is(err, store.ErrClaimed):
				// Another member of a payee fleet sharing this store
				// settles it (store.StartClosing: exactly one closer).
				a.log().Debug("settlement left to the member that claimed it", "channel", rec.ID())
			case err != nil:
				errs = append(errs, fmt.Errorf("settling %s: %w", rec.ID(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// endSessionDue ends the session serving a channel due for settlement, if
// any, and waits until it has let the channel go (it settles it on its way
// out). It reports whether a session was serving the channel.
func (a *Payee) endSessionDue(ctx context.Context, rec *store.Record, tip uint32) bool {
	id := rec.ID()
	a.mu.Lock()
	c := a.active[id]
	a.mu.Unlock()
	if c == nil {
		return false
	}
	a.log().Warn("refund lock near: ending the session to settle", "channel", id, "tip", tip, "lock", rec.Channel.ExpiryHeight)
	c.cancel(ErrExpiryNear)
	select {
	case <-c.done:
	case <-ctx.Done():
	}
	return true
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
