package channel

import (
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sat"
	"github.com/paysip/paysip/txbuild"
)

// PayerState is where a payer's session stands.
type PayerState int

// Payer states, in protocol order.
const (
	PayerIdle        PayerState = iota
	PayerHelloSent              // waiting for terms
	PayerTerms                  // terms known, waiting for Fund
	PayerRefundAsked            // refund request sent
	PayerFunded                 // funding broadcast, waiting for open
	PayerOpen                   // paying
	PayerClosing                // close sent
	PayerClosed                 // channel closed
	PayerFailed                 // session ended by an error
)

var payerStateNames = [...]string{"idle", "hello-sent", "terms", "refund-asked", "funded", "open", "closing", "closed", "failed"}

func (s PayerState) String() string { return payerStateNames[s] }

// DefaultMaxLockBlocks is how far ahead of the tip a payer lets its refund
// be locked by default: 1,008 blocks (7 days), bitcoinj's upper clamp.
const DefaultMaxLockBlocks = 1008

// PayerConfig configures a payer session. The limits are what the payer's
// user allowed; the payee's terms are checked against them before anything
// is prepared, so a hostile payee cannot make the payer lock more, for
// longer, or pay more than allowed.
type PayerConfig struct {
	// Key is the payer's key for this channel (derived by the wallet).
	Key *btcec.PrivateKey
	// MaxPriceSatPerMin refuses terms above this price. It is required:
	// with 0 every terms message is refused (there is no "any price").
	MaxPriceSatPerMin int64
	// MaxCapacitySat is the largest pool the user allows to lock. Required
	// to open a channel: terms asking a larger minimum pool are refused.
	MaxCapacitySat int64
	// MaxLockBlocks bounds the refund's lock time: at most this many blocks
	// above the tip (ObserveTip) when the channel is funded. 0 means
	// DefaultMaxLockBlocks.
	MaxLockBlocks uint32
	// MaxFirstPaymentSat, when set, refuses terms whose minimum first
	// payment is above it (the user's budget for the call). When not set,
	// the minimum first payment may be at most what a legitimate one needs
	// (FirstPaymentCap): a payee cannot ask for much of the pool up front
	// and hang up.
	MaxFirstPaymentSat int64
	// FeeRate is the payer's own fee estimate, for FirstPaymentCap.
	FeeRate txbuild.FeeRate
	// Agent names the software in the hello (optional).
	Agent string
}

func (c PayerConfig) maxLock() uint32 {
	if c.MaxLockBlocks == 0 {
		return DefaultMaxLockBlocks
	}
	return c.MaxLockBlocks
}

// Payer runs the payer's half of the protocol for one session. It is not
// safe for concurrent use: one goroutine owns it.
type Payer struct {
	cfg     PayerConfig
	state   PayerState
	version int
	terms   *Terms
	ch      *Channel
	resume  string

	funding   *wire.MsgTx // signed
	refund    *wire.MsgTx // unsigned until the payee signs
	refundTx  *wire.MsgTx // complete
	signedSat int64
	ackedSat  int64
	inFlight  bool
	tip       uint32 // best chain height known (ObserveTip)
}

// ObserveTip tells the payer the chain's current height; the refund's lock
// time is bounded from it. Call it before Start and whenever it is known
// to have moved.
func (p *Payer) ObserveTip(height uint32) {
	if height > p.tip {
		p.tip = height
	}
}

// NewPayer starts a session that will open a new channel.
func NewPayer(cfg PayerConfig) *Payer {
	return &Payer{cfg: cfg}
}

// ResumePayer starts a session that goes on paying from a stored channel.
func ResumePayer(cfg PayerConfig, rec PayerRecord) (*Payer, error) {
	if rec.Channel == nil || !rec.Channel.PayerKey.IsEqual(cfg.Key.PubKey()) {
		return nil, fmt.Errorf("%w: record does not belong to this key", ErrResume)
	}
	return &Payer{cfg: cfg, ch: rec.Channel, resume: rec.Channel.ID(), funding: rec.FundingTx,
		refundTx: rec.RefundTx, signedSat: rec.SignedSat, ackedSat: rec.AckedSat}, nil
}

// State returns the session's state.
func (p *Payer) State() PayerState { return p.state }

// Channel returns the channel once it is known (after Fund, or on resume).
func (p *Payer) Channel() *Channel { return p.ch }

// Terms returns the payee's terms once received.
func (p *Payer) Terms() *Terms { return p.terms }

// AckedSat is the highest payment the payee acknowledged.
func (p *Payer) AckedSat() int64 { return p.ackedSat }

// SignedSat is the highest payment signed; the payee may hold it.
func (p *Payer) SignedSat() int64 { return p.signedSat }

// InFlight reports whether a payment waits for its ack.
func (p *Payer) InFlight() bool { return p.inFlight }

// Record returns what the payer must store about the channel.
func (p *Payer) Record() PayerRecord {
	return PayerRecord{Channel: p.ch, FundingTx: p.funding, RefundTx: p.refundTx, SignedSat: p.signedSat, AckedSat: p.ackedSat}
}

// RefundTx returns the complete refund (both signatures), broadcastable
// once the chain reaches the expiry height.
func (p *Payer) RefundTx() *wire.MsgTx { return p.refundTx }

func (p *Payer) send(m paywire.Message) Effect {
	m.SetVersion(p.versionOr1())
	return Send{Msg: m}
}

// Start sends the hello (the seed's step 1: ask for the payee's key).
func (p *Payer) Start() ([]Effect, error) {
	if p.state != PayerIdle {
		return nil, fmt.Errorf("%w: start in state %v", ErrUnexpected, p.state)
	}
	p.state = PayerHelloSent
	h := &paywire.Hello{Versions: paywire.SupportedVersions, Resume: p.resume, Agent: p.cfg.Agent}
	h.V = paywire.Version1
	return []Effect{Send{Msg: h}}, nil
}

// Fund is the seed's steps 2 and 3: given a signed funding transaction
// paying the pool at output vout, build the time-locked refund and ask the
// payee to sign it. The funding is sent stripped of its witnesses: the
// payee can check it but not broadcast it.
type FundRequest struct {
	FundingTx    *wire.MsgTx // fully signed segwit transaction (BuildFunding + wallet)
	Vout         uint32
	ExpiryHeight uint32 // 0 picks the earliest the payee accepts
	PayerScript  []byte // refund and change destination
	RefundFee    txbuild.FeeRate
}

// Fund builds the refund for a prepared funding and asks for its signature.
func (p *Payer) Fund(req FundRequest) ([]Effect, error) {
	if p.state != PayerTerms || p.resume != "" {
		return nil, fmt.Errorf("%w: fund in state %v", ErrUnexpected, p.state)
	}
	if !fullySignedSegwit(req.FundingTx) {
		return nil, ErrFundingMalleable
	}
	t := p.terms
	expiry := req.ExpiryHeight
	if expiry == 0 {
		expiry = t.MinExpiryHeight
	}
	if expiry < t.MinExpiryHeight || expiry > t.MaxExpiryHeight {
		return nil, fmt.Errorf("%w: expiry %d outside the payee's window [%d, %d]", ErrBadTerms, expiry, t.MinExpiryHeight, t.MaxExpiryHeight)
	}
	if limit := uint64(p.tip) + uint64(p.cfg.maxLock()); p.tip == 0 || uint64(expiry) > limit {
		return nil, fmt.Errorf("%w: refund lock %d more than %d blocks above the tip %d", ErrBadTerms, expiry, p.cfg.maxLock(), p.tip)
	}
	if !standardPayout(req.PayerScript) {
		return nil, fmt.Errorf("%w: payer script is not standard", ErrRefundPaysElsewhere)
	}
	ws, err := MultisigScript(p.cfg.Key.PubKey(), t.PayeeKey)
	if err != nil {
		return nil, err
	}
	capacity, err := fundingOutput(req.FundingTx, req.Vout, P2WSH(ws))
	if err != nil {
		return nil, err
	}
	if capacity < t.MinChannelSat {
		return nil, fmt.Errorf("%w: %d < %d", ErrFundingTooSmall, capacity, t.MinChannelSat)
	}
	if capacity > p.cfg.MaxCapacitySat {
		return nil, fmt.Errorf("%w: pool %d above the user's limit %d", ErrBadTerms, capacity, p.cfg.MaxCapacitySat)
	}
	ch, err := NewChannel(wire.OutPoint{Hash: req.FundingTx.TxHash(), Index: req.Vout}, capacity, p.cfg.Key.PubKey(), t.PayeeKey, expiry, req.PayerScript)
	if err != nil {
		return nil, err
	}
	fee, err := ch.RefundFee(req.RefundFee)
	if err != nil {
		return nil, err
	}
	refund, err := ch.RefundTx(fee)
	if err != nil {
		return nil, err
	}
	p.ch, p.funding, p.refund = ch, req.FundingTx, refund
	p.state = PayerRefundAsked
	return []Effect{p.send(&paywire.RefundRequest{
		PayerKey: p.cfg.Key.PubKey().SerializeCompressed(), FundingTx: serializeNoWitness(req.FundingTx),
		FundingVout: req.Vout, RefundTx: serialize(refund),
	})}, nil
}

// Pay signs a new state giving the payee paidSat in total (the seed's step
// 5). One payment is in flight at a time; the next waits for the ack.
func (p *Payer) Pay(paidSat int64) ([]Effect, error) {
	if p.state != PayerOpen {
		return nil, fmt.Errorf("%w: pay in state %v", ErrUnexpected, p.state)
	}
	if p.inFlight {
		return nil, ErrPaymentInFlight
	}
	if err := p.checkNext(paidSat); err != nil {
		return nil, err
	}
	sig, err := p.ch.SignPayment(p.cfg.Key, paidSat)
	if err != nil {
		return nil, err
	}
	p.signedSat, p.inFlight = paidSat, true
	id := p.ch.ID()
	return []Effect{
		PersistPayment{ChannelID: id, PaidSat: paidSat, Sig: sig},
		p.send(&paywire.Pay{ChannelID: id, PaidSat: paidSat, Sig: sig}),
	}, nil
}

// checkNext applies the payee's rules to a payment before signing it, so
// that the payer never signs what the payee will refuse.
func (p *Payer) checkNext(paid int64) error {
	if err := sat.Check(paid); err != nil {
		return fmt.Errorf("%w: %v", ErrAmount, err)
	}
	if paid <= p.ackedSat {
		return fmt.Errorf("%w: %d <= %d", ErrPaymentNotAbove, paid, p.ackedSat)
	}
	if paid > p.ch.CapacitySat {
		return fmt.Errorf("%w: %d > %d", ErrPaymentAboveCapacity, paid, p.ch.CapacitySat)
	}
	if pe := checkStep(p.terms, p.ch, p.ackedSat, paid); pe != nil {
		return pe
	}
	return nil
}

// checkStep applies the minimum first payment and minimum step, which a
// payment emptying the pool is exempt from.
func checkStep(t *Terms, ch *Channel, best, paid int64) *ProtocolError {
	if paid == ch.CapacitySat {
		return nil
	}
	if best == 0 && paid < t.MinPaymentSat {
		return perr(paywire.CodePaymentTooLow, ErrPaymentBelowMin, "first payment %d below %d", paid, t.MinPaymentSat).expect(t.MinPaymentSat)
	}
	if best > 0 && paid-best < t.MinStepSat {
		return perr(paywire.CodePaymentTooLow, ErrPaymentBelowMin, "step %d below %d", paid-best, t.MinStepSat).expect(best + t.MinStepSat)
	}
	return nil
}

// MaxPayable is the largest total below the capacity that leaves the payer
// change above dust. Paying the whole capacity (change zero) is the only
// larger payment possible.
func (p *Payer) MaxPayable() int64 {
	if p.ch == nil {
		return 0
	}
	return MaxPayableBelowCapacity(p.ch)
}

// MaxPayableBelowCapacity is the largest payment leaving the payer non-dust
// change.
func MaxPayableBelowCapacity(ch *Channel) int64 {
	lo, hi := int64(0), ch.CapacitySat // change = capacity - paid; find smallest non-dust change
	for lo < hi {
		mid := lo + (hi-lo)/2
		if IsDust(mid, ch.PayerScript) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return ch.CapacitySat - lo
}

// Close asks the payee to settle and close the channel.
func (p *Payer) Close(reason string) ([]Effect, error) {
	if p.state != PayerOpen {
		return nil, fmt.Errorf("%w: close in state %v", ErrUnexpected, p.state)
	}
	p.state = PayerClosing
	return []Effect{p.send(&paywire.Close{ChannelID: p.ch.ID(), Reason: reason})}, nil
}

// Handle processes a message from the payee. A refusal returns a
// *ProtocolError and an effect sending the matching error message; the
// session is then over (the channel itself stays, and the refund with it).
func (p *Payer) Handle(m paywire.Message) ([]Effect, error) {
	effs, perr := p.handle(m)
	if perr != nil {
		p.state = PayerFailed
		id := ""
		if p.ch != nil {
			id = p.ch.ID()
		}
		return []Effect{Send{Msg: perr.Wire(p.versionOr1(), id)}}, perr
	}
	return effs, nil
}

func (p *Payer) versionOr1() int {
	if p.version == 0 {
		return paywire.Version1
	}
	return p.version
}

func (p *Payer) handle(m paywire.Message) ([]Effect, *ProtocolError) {
	if e, ok := m.(*paywire.Error); ok {
		p.state = PayerFailed
		return []Effect{PeerError{Msg: e}}, nil
	}
	if p.version != 0 && m.Version() != p.version {
		return nil, perr(paywire.CodeUnsupportedVersion, ErrVersion, "message in version %d, session is %d", m.Version(), p.version)
	}
	switch m := m.(type) {
	case *paywire.Terms:
		if p.state != PayerHelloSent {
			break
		}
		return p.onTerms(m)
	case *paywire.RefundSigned:
		if p.state != PayerRefundAsked {
			break
		}
		return p.onRefundSigned(m)
	case *paywire.Open:
		if p.state != PayerFunded {
			break
		}
		return p.onOpen(m)
	case *paywire.Ack:
		if p.state != PayerOpen && p.state != PayerClosing {
			break
		}
		return p.onAck(m)
	case *paywire.Closed:
		if p.state != PayerOpen && p.state != PayerClosing {
			break
		}
		if m.ChannelID != p.ch.ID() {
			return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
		}
		p.state = PayerClosed
		return []Effect{Closed{ChannelID: m.ChannelID, PaidSat: m.PaidSat, SettlementTxID: m.SettlementTxID}}, nil
	}
	return nil, perr(paywire.CodeUnexpected, ErrUnexpected, "%s in state %v", m.Type(), p.state)
}

func (p *Payer) onTerms(m *paywire.Terms) ([]Effect, *ProtocolError) {
	if !paywire.Supports(m.V) {
		return nil, perr(paywire.CodeUnsupportedVersion, ErrVersion, "payee chose version %d", m.V)
	}
	p.version = m.V
	t, err := TermsFromWire(m)
	if err != nil {
		code := paywire.CodeBadTerms
		return nil, &ProtocolError{Code: code, Err: err}
	}
	if p.cfg.MaxPriceSatPerMin <= 0 {
		return nil, perr(paywire.CodeBadTerms, ErrBadTerms, "the caller set no price ceiling")
	}
	if t.PriceSatPerMin > p.cfg.MaxPriceSatPerMin {
		return nil, perr(paywire.CodeBadTerms, ErrBadTerms, "price %d sat/min above the caller's limit %d", t.PriceSatPerMin, p.cfg.MaxPriceSatPerMin).expect(p.cfg.MaxPriceSatPerMin)
	}
	if p.resume != "" {
		if !t.PayeeKey.IsEqual(p.ch.PayeeKey) {
			return nil, perr(paywire.CodeBadTerms, ErrBadKey, "payee key differs from the channel's")
		}
		if len(m.Challenge) != paywire.ChallengeSize {
			return nil, perr(paywire.CodeBadTerms, ErrResume, "no resume challenge in the terms")
		}
		// Nothing acknowledged yet: the next payment is a first payment,
		// sized by these terms. It is held to the same limits as on a new
		// channel, or a payee could let a channel open, drop the call, and
		// ask most of the pool up front when it is resumed.
		if p.ackedSat == 0 {
			if pe := p.checkFirstPayment(t); pe != nil {
				return nil, pe
			}
		}
		p.terms = t
		d := paywire.ResumeDigest(p.ch.ID(), m.Challenge, p.ch.PayeeKey.SerializeCompressed())
		sig := ecdsa.Sign(p.cfg.Key, d[:]).Serialize()
		p.state = PayerFunded // waiting for open
		return []Effect{p.send(&paywire.ResumeProof{ChannelID: p.ch.ID(), Sig: sig})}, nil
	}
	if pe := p.checkTermsLimits(t); pe != nil {
		return nil, pe
	}
	p.terms = t
	p.state = PayerTerms
	return []Effect{TermsReceived{Terms: t}}, nil
}

// FirstPaymentCap is the largest minimum first payment a payer accepts
// without a budget set: ten seconds of the call, or what a settlement to
// the payee's payout script needs at four times the payer's fee estimate
// (the payee derives its minimum from its own estimate, with headroom),
// or 2,000 sat, whichever is largest.
func FirstPaymentCap(t *Terms, rate txbuild.FeeRate) int64 {
	limit := int64(2000)
	if v, err := Owed(t.PriceSatPerMin, 10); err == nil {
		limit = max(limit, v)
	}
	if rate > 0 {
		if v, err := MinPaymentFor(t.PayoutScript, rate*4); err == nil {
			limit = max(limit, v)
		}
	}
	return limit
}

// checkTermsLimits refuses terms that would make the payer lock more, for
// longer, or pay more at once than its user allowed, before anything is
// prepared or funded.
func (p *Payer) checkTermsLimits(t *Terms) *ProtocolError {
	c := p.cfg
	if c.MaxCapacitySat <= 0 {
		return perr(paywire.CodeBadTerms, ErrBadTerms, "the caller set no pool limit")
	}
	if t.MinChannelSat > c.MaxCapacitySat {
		return perr(paywire.CodeBadTerms, ErrBadTerms, "minimum pool %d sat above the caller's limit %d", t.MinChannelSat, c.MaxCapacitySat).expect(c.MaxCapacitySat)
	}
	if pe := p.checkFirstPayment(t); pe != nil {
		return pe
	}
	if p.tip == 0 {
		return perr(paywire.CodeInternal, ErrBadTerms, "the caller does not know the chain's height")
	}
	if limit := uint64(p.tip) + uint64(c.maxLock()); uint64(t.MinExpiryHeight) > limit {
		return perr(paywire.CodeBadTerms, ErrBadTerms, "refund window starts at height %d, more than %d blocks above the tip %d", t.MinExpiryHeight, c.maxLock(), p.tip).expect(int64(limit))
	}
	return nil
}

// checkFirstPayment refuses terms whose minimum first payment is above the
// call's budget or, without a budget, above what a first payment needs
// (FirstPaymentCap).
func (p *Payer) checkFirstPayment(t *Terms) *ProtocolError {
	c := p.cfg
	if c.MaxFirstPaymentSat > 0 && t.MinPaymentSat > c.MaxFirstPaymentSat {
		return perr(paywire.CodeBadTerms, ErrBadTerms, "minimum first payment %d sat above the caller's budget %d", t.MinPaymentSat, c.MaxFirstPaymentSat).expect(c.MaxFirstPaymentSat)
	}
	if limit := FirstPaymentCap(t, c.FeeRate); c.MaxFirstPaymentSat == 0 && t.MinPaymentSat > limit {
		return perr(paywire.CodeBadTerms, ErrBadTerms, "minimum first payment %d sat above what a first payment needs (%d)", t.MinPaymentSat, limit).expect(limit)
	}
	return nil
}

func (p *Payer) onRefundSigned(m *paywire.RefundSigned) ([]Effect, *ProtocolError) {
	if m.ChannelID != p.ch.ID() {
		return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
	}
	h, err := p.ch.refundSigHash(p.refund)
	if err != nil {
		return nil, perr(paywire.CodeInternal, err, "")
	}
	if err := verifySig(m.Sig, txscript.SigHashAll, h, p.ch.PayeeKey); err != nil {
		return nil, sigError(err)
	}
	mine, err := p.ch.SignRefund(p.cfg.Key, p.refund)
	if err != nil {
		return nil, perr(paywire.CodeInternal, err, "")
	}
	p.refundTx = p.ch.CompleteRefund(p.refund, mine, m.Sig)
	p.state = PayerFunded
	return []Effect{
		PersistRefund{Record: p.Record()},
		BroadcastFunding{Tx: p.funding},
		p.send(&paywire.Funded{ChannelID: p.ch.ID(), FundingTx: serialize(p.funding)}),
	}, nil
}

func sigError(err error) *ProtocolError {
	code := paywire.CodeBadSignature
	if errors.Is(err, ErrBadSighash) {
		code = paywire.CodeBadSighash
	}
	return &ProtocolError{Code: code, Err: err}
}

func (p *Payer) onOpen(m *paywire.Open) ([]Effect, *ProtocolError) {
	if m.ChannelID != p.ch.ID() {
		return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
	}
	if m.CapacitySat != p.ch.CapacitySat || m.ExpiryHeight != p.ch.ExpiryHeight {
		return nil, perr(paywire.CodeBadFunding, ErrFundingMismatch, "payee sees capacity %d expiry %d", m.CapacitySat, m.ExpiryHeight).expect(p.ch.CapacitySat)
	}
	// The payee can hold at most what was signed. If it holds more than was
	// acknowledged, the last payment reached it but its ack did not.
	if m.PaidSat > p.signedSat {
		return nil, perr(paywire.CodeBadPayment, ErrPaymentAboveCapacity, "payee claims %d, only %d was signed", m.PaidSat, p.signedSat).expect(p.signedSat)
	}
	if m.PaidSat > p.ackedSat {
		p.ackedSat = m.PaidSat
	}
	p.signedSat = p.ackedSat
	p.state = PayerOpen
	return []Effect{Opened{Channel: p.ch, PaidSat: p.ackedSat}}, nil
}

func (p *Payer) onAck(m *paywire.Ack) ([]Effect, *ProtocolError) {
	if m.ChannelID != p.ch.ID() {
		return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
	}
	if !p.inFlight || m.PaidSat != p.signedSat {
		return nil, perr(paywire.CodeUnexpected, ErrAckMismatch, "ack of %d, in flight %d (%v)", m.PaidSat, p.signedSat, p.inFlight).expect(p.signedSat)
	}
	p.ackedSat, p.inFlight = m.PaidSat, false
	return []Effect{Acked{PaidSat: m.PaidSat}}, nil
}
