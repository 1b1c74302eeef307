package channel

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
)

// PayeeState is where a payee's session stands.
type PayeeState int

// Payee states, in protocol order.
const (
	PayeeIdle           PayeeState = iota // waiting for hello
	PayeeTermsSent                        // waiting for a refund request
	PayeeRefundSigned                     // waiting for funded
	PayeeFundingPending                   // waiting for FundingAccepted
	PayeeResumePending                    // waiting for Resume
	PayeeResumeAuth                       // waiting for the payer's resume proof
	PayeeOpen                             // taking payments
	PayeeClosing                          // settling
	PayeeClosed                           // settled
	PayeeFailed                           // session ended by an error
)

var payeeStateNames = [...]string{"idle", "terms-sent", "refund-signed", "funding-pending", "resume-pending", "resume-auth", "open", "closing", "closed", "failed"}

func (s PayeeState) String() string { return payeeStateNames[s] }

// PayeeConfig configures a payee session.
type PayeeConfig struct {
	// Key is the payee's key for channels opened in this session; its
	// public half is Terms.PayeeKey.
	Key   *btcec.PrivateKey
	Terms Terms
	// MinLockAhead is how many blocks above the chain's tip (ObserveTip)
	// the refund's lock time must still be when the payee signs the refund,
	// when the funding arrives, and when the funding is accepted: a payer
	// that lets the window go stale (to take its refund at once after being
	// served) is refused. Required; it should exceed the margin at which
	// the payee settles before expiry.
	MinLockAhead uint32
}

// Payee runs the payee's half of the protocol for one session. It is not
// safe for concurrent use: one goroutine owns it.
type Payee struct {
	cfg     PayeeConfig
	state   PayeeState
	version int
	ch      *Channel
	funding *wire.MsgTx
	bestSat int64
	bestSig []byte
	resume  string
	tip     uint32 // best chain height known (ObserveTip)
	// resume authentication: the challenge sent and the record to reopen
	challenge []byte
	resumeRec PayeeRecord
}

// ObserveTip tells the payee the chain's current height, against which
// refund lock times are checked. Call it before handing over a refund
// request or a funded message, and before FundingAccepted.
func (p *Payee) ObserveTip(height uint32) {
	if height > p.tip {
		p.tip = height
	}
}

// checkLockAhead refuses a channel whose refund could be taken too soon.
func (p *Payee) checkLockAhead(lock uint32, when string) *ProtocolError {
	need := uint64(p.tip) + uint64(p.cfg.MinLockAhead)
	if p.tip == 0 {
		return perr(paywire.CodeInternal, ErrRefundLockTooNear, "the payee does not know the chain's height")
	}
	if uint64(lock) < need {
		return perr(paywire.CodeBadRefund, ErrRefundLockTooNear, "%s: refund lock %d is less than %d blocks above the tip %d", when, lock, p.cfg.MinLockAhead, p.tip).expect(int64(need))
	}
	return nil
}

// NewPayee starts a session. The terms are checked here so that a payee
// never offers terms it would refuse itself.
func NewPayee(cfg PayeeConfig) (*Payee, error) {
	if err := cfg.Terms.Validate(); err != nil {
		return nil, err
	}
	if cfg.Key == nil || !cfg.Key.PubKey().IsEqual(cfg.Terms.PayeeKey) {
		return nil, fmt.Errorf("%w: terms key is not the session key", ErrBadKey)
	}
	if cfg.MinLockAhead == 0 {
		return nil, fmt.Errorf("%w: no minimum lock distance", ErrBadTerms)
	}
	return &Payee{cfg: cfg}, nil
}

// State returns the session's state.
func (p *Payee) State() PayeeState { return p.state }

// Channel returns the channel once known.
func (p *Payee) Channel() *Channel { return p.ch }

// BestSat is the best payment held.
func (p *Payee) BestSat() int64 { return p.bestSat }

// Record returns what the payee must store about the channel.
func (p *Payee) Record() PayeeRecord {
	return PayeeRecord{Channel: p.ch, FundingTx: p.funding, BestSat: p.bestSat, BestSig: p.bestSig}
}

func (p *Payee) send(m paywire.Message) Effect {
	m.SetVersion(p.versionOr1())
	return Send{Msg: m}
}

func (p *Payee) versionOr1() int {
	if p.version == 0 {
		return paywire.Version1
	}
	return p.version
}

// Handle processes a message from the payer. A refusal returns a
// *ProtocolError and an effect sending the matching error message; the
// session is then over, but the best payment stays (see Record).
func (p *Payee) Handle(m paywire.Message) ([]Effect, error) {
	effs, perr := p.handle(m)
	if perr != nil {
		p.state = PayeeFailed
		id := ""
		if p.ch != nil {
			id = p.ch.ID()
		}
		return []Effect{Send{Msg: perr.Wire(p.versionOr1(), id)}}, perr
	}
	return effs, nil
}

func (p *Payee) handle(m paywire.Message) ([]Effect, *ProtocolError) {
	if e, ok := m.(*paywire.Error); ok {
		p.state = PayeeFailed
		return []Effect{PeerError{Msg: e}}, nil
	}
	if _, hello := m.(*paywire.Hello); !hello && p.version != 0 && m.Version() != p.version {
		return nil, perr(paywire.CodeUnsupportedVersion, ErrVersion, "message in version %d, session is %d", m.Version(), p.version)
	}
	switch m := m.(type) {
	case *paywire.Hello:
		if p.state == PayeeIdle {
			return p.onHello(m)
		}
	case *paywire.RefundRequest:
		if p.state == PayeeTermsSent {
			return p.onRefundRequest(m)
		}
	case *paywire.Funded:
		if p.state == PayeeRefundSigned {
			return p.onFunded(m)
		}
	case *paywire.ResumeProof:
		if p.state == PayeeResumeAuth {
			return p.onResumeProof(m)
		}
	case *paywire.Pay:
		if p.state == PayeeOpen {
			return p.onPay(m)
		}
		if p.state == PayeeClosing || p.state == PayeeClosed {
			return nil, perr(paywire.CodeChannelClosed, ErrChannelClosed, "")
		}
	case *paywire.Close:
		if p.state == PayeeOpen {
			if m.ChannelID != p.ch.ID() {
				return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
			}
			p.state = PayeeClosing
			return []Effect{SettleRequested{ChannelID: p.ch.ID(), PaidSat: p.bestSat}}, nil
		}
	}
	return nil, perr(paywire.CodeUnexpected, ErrUnexpected, "%s in state %v", m.Type(), p.state)
}

func (p *Payee) onHello(m *paywire.Hello) ([]Effect, *ProtocolError) {
	v := paywire.Negotiate(m.Versions)
	if v == 0 {
		max := int64(paywire.SupportedVersions[len(paywire.SupportedVersions)-1])
		return nil, perr(paywire.CodeUnsupportedVersion, ErrVersion, "payer speaks %v, payee %v", m.Versions, paywire.SupportedVersions).expect(max)
	}
	p.version = v
	if m.Resume != "" {
		p.resume = m.Resume
		p.state = PayeeResumePending
		return []Effect{ResumeRequested{ChannelID: m.Resume}}, nil
	}
	p.state = PayeeTermsSent
	return []Effect{Send{Msg: p.cfg.Terms.Wire(v)}}, nil
}

// Resume continues a stored channel that the payer named in its hello: the
// payee sends its terms, now carrying the channel's key and a fresh
// challenge (32 random bytes the caller supplies), and opens the channel
// only once the payer signs the challenge with the channel's payer key
// (resume_proof): whoever merely knows a channel id cannot take over the
// session of the payer who owns it. key is the payee's private key of that
// channel.
func (p *Payee) Resume(rec PayeeRecord, key *btcec.PrivateKey, challenge []byte) ([]Effect, error) {
	if p.state != PayeeResumePending {
		return nil, fmt.Errorf("%w: resume in state %v", ErrUnexpected, p.state)
	}
	if len(challenge) != paywire.ChallengeSize {
		return nil, fmt.Errorf("%w: challenge of %d bytes", ErrResume, len(challenge))
	}
	if rec.Channel == nil || rec.Channel.ID() != p.resume || key == nil || !rec.Channel.PayeeKey.IsEqual(key.PubKey()) {
		return p.RefuseResume("channel record does not match")
	}
	p.cfg.Key, p.cfg.Terms.PayeeKey = key, key.PubKey()
	p.challenge, p.resumeRec = append([]byte(nil), challenge...), rec
	p.state = PayeeResumeAuth
	m := p.cfg.Terms.Wire(p.version)
	m.Challenge = p.challenge
	return []Effect{Send{Msg: m}}, nil
}

// onResumeProof checks the payer's signature of the challenge, then reopens
// the channel with the best payment held.
func (p *Payee) onResumeProof(m *paywire.ResumeProof) ([]Effect, *ProtocolError) {
	rec := p.resumeRec
	if m.ChannelID != rec.Channel.ID() {
		return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
	}
	sig, err := ecdsa.ParseDERSignature(m.Sig)
	d := paywire.ResumeDigest(rec.Channel.ID(), p.challenge, rec.Channel.PayeeKey.SerializeCompressed())
	if err != nil || !sig.Verify(d[:], rec.Channel.PayerKey) {
		return nil, perr(paywire.CodeBadSignature, ErrResume, "resume proof is not signed by the channel's payer key")
	}
	p.ch, p.funding, p.bestSat, p.bestSig = rec.Channel, rec.FundingTx, rec.BestSat, rec.BestSig
	p.state = PayeeOpen
	p.ch.verifier() // as in FundingAccepted
	return []Effect{
		p.send(&paywire.Open{ChannelID: p.ch.ID(), CapacitySat: p.ch.CapacitySat, PaidSat: p.bestSat, ExpiryHeight: p.ch.ExpiryHeight}),
		Opened{Channel: p.ch, PaidSat: p.bestSat},
	}, nil
}

// RaiseBest raises the best payment held to paid (with the payer's
// signature sig) when it is higher: on a resumed channel, another session
// may have stored payments after the channel was read for this one.
func (p *Payee) RaiseBest(paid int64, sig []byte) {
	if p.state == PayeeOpen && paid > p.bestSat {
		p.bestSat, p.bestSig = paid, sig
	}
}

// RefuseResume answers a resume the payee cannot serve (unknown, closed or
// too close to expiry).
func (p *Payee) RefuseResume(reason string) ([]Effect, error) {
	e := perr(paywire.CodeUnknownChannel, ErrResume, "%s: %s", p.resume, reason)
	p.state = PayeeFailed
	return []Effect{Send{Msg: e.Wire(p.versionOr1(), "")}}, e
}

// onRefundRequest checks the prepared funding and the refund, and signs the
// refund (the seed's step 4: the payee signs before any coin is locked).
func (p *Payee) onRefundRequest(m *paywire.RefundRequest) ([]Effect, *ProtocolError) {
	t := &p.cfg.Terms
	payer, err := ParseKey(m.PayerKey)
	if err != nil {
		return nil, &ProtocolError{Code: paywire.CodeBadFunding, Err: err}
	}
	funding, err := DecodeTx(m.FundingTx)
	if err != nil {
		return nil, perr(paywire.CodeBadFunding, ErrFundingScript, "funding transaction: %v", err)
	}
	ws, err := MultisigScript(payer, t.PayeeKey)
	if err != nil {
		return nil, &ProtocolError{Code: paywire.CodeBadFunding, Err: err}
	}
	pk := P2WSH(ws)
	capacity, err := fundingOutput(funding, m.FundingVout, pk)
	if err != nil {
		return nil, &ProtocolError{Code: paywire.CodeBadFunding, Err: err}
	}
	if capacity < t.MinChannelSat {
		return nil, perr(paywire.CodeBadFunding, ErrFundingTooSmall, "%d < %d", capacity, t.MinChannelSat).expect(t.MinChannelSat)
	}
	refund, err := DecodeTx(m.RefundTx)
	if err != nil {
		return nil, perr(paywire.CodeBadRefund, ErrRefundShape, "refund transaction: %v", err)
	}
	op := wire.OutPoint{Hash: funding.TxHash(), Index: m.FundingVout}
	if pe := checkRefund(refund, op, pk, t.MinExpiryHeight, t.MaxExpiryHeight); pe != nil {
		return nil, pe
	}
	if pe := p.checkLockAhead(refund.LockTime, "refund request"); pe != nil {
		return nil, pe
	}
	ch, err := NewChannel(op, capacity, payer, t.PayeeKey, refund.LockTime, refund.TxOut[0].PkScript)
	if err != nil {
		return nil, &ProtocolError{Code: paywire.CodeBadFunding, Err: err}
	}
	sig, err := ch.SignRefund(p.cfg.Key, refund)
	if err != nil {
		return nil, perr(paywire.CodeInternal, err, "")
	}
	p.ch, p.funding = ch, funding
	p.state = PayeeRefundSigned
	return []Effect{p.send(&paywire.RefundSigned{ChannelID: ch.ID(), Sig: sig})}, nil
}

func (p *Payee) onFunded(m *paywire.Funded) ([]Effect, *ProtocolError) {
	if m.ChannelID != p.ch.ID() {
		return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
	}
	tx, err := DecodeTx(m.FundingTx)
	if err != nil {
		return nil, perr(paywire.CodeBadFunding, ErrFundingMismatch, "%v", err)
	}
	if tx.TxHash() != p.ch.Outpoint.Hash || !bytes.Equal(serializeNoWitness(tx), serializeNoWitness(p.funding)) {
		return nil, perr(paywire.CodeBadFunding, ErrFundingMismatch, "txid %v, announced %v", tx.TxHash(), p.ch.Outpoint.Hash)
	}
	if pe := p.checkLockAhead(p.ch.ExpiryHeight, "funding"); pe != nil {
		return nil, pe
	}
	p.funding = tx
	p.state = PayeeFundingPending
	return []Effect{FundingReceived{Channel: p.ch, Tx: tx}}, nil
}

// FundingAccepted is called once the payee's chain policy accepts the
// funding (seen by its node, or confirmed): the channel is stored, then
// opened.
func (p *Payee) FundingAccepted() ([]Effect, error) {
	if p.state != PayeeFundingPending {
		return nil, fmt.Errorf("%w: funding accepted in state %v", ErrUnexpected, p.state)
	}
	// The funding may have waited for confirmations: the window must
	// still hold now.
	if pe := p.checkLockAhead(p.ch.ExpiryHeight, "funding accepted"); pe != nil {
		p.state = PayeeFailed
		return []Effect{Send{Msg: pe.Wire(p.versionOr1(), p.ch.ID())}}, pe
	}
	p.state = PayeeOpen
	// Every payment from now on is checked against the payer's key: build
	// its verifier's table now (a few verifications' worth of work) rather
	// than in the first payment's round trip.
	p.ch.verifier()
	return []Effect{
		PersistChannel{Record: p.Record()},
		p.send(&paywire.Open{ChannelID: p.ch.ID(), CapacitySat: p.ch.CapacitySat, PaidSat: 0, ExpiryHeight: p.ch.ExpiryHeight}),
		Opened{Channel: p.ch},
	}, nil
}

// onPay is the payee's check of a payment (bitcoinj's rules): same
// channel, strictly above the best held, not above the pool, minimum first
// payment and step, change not dust unless zero, exact sighash type, valid
// signature against the BIP143 sighash. Only then is it kept, stored, and
// acknowledged.
func (p *Payee) onPay(m *paywire.Pay) ([]Effect, *ProtocolError) {
	if m.ChannelID != p.ch.ID() {
		return nil, perr(paywire.CodeUnknownChannel, ErrWrongChannel, "%s", m.ChannelID)
	}
	if m.PaidSat > p.ch.CapacitySat {
		return nil, perr(paywire.CodePaymentTooHigh, ErrPaymentAboveCapacity, "%d > capacity %d", m.PaidSat, p.ch.CapacitySat).expect(p.ch.CapacitySat)
	}
	if m.PaidSat <= p.bestSat {
		return nil, perr(paywire.CodePaymentTooLow, ErrPaymentNotAbove, "%d <= best %d", m.PaidSat, p.bestSat).expect(p.bestSat)
	}
	if pe := checkStep(&p.cfg.Terms, p.ch, p.bestSat, m.PaidSat); pe != nil {
		return nil, pe
	}
	if err := p.ch.VerifyPayment(m.PaidSat, m.Sig); err != nil {
		if pe, ok := paymentError(err); ok {
			return nil, pe
		}
		return nil, sigError(err)
	}
	p.bestSat, p.bestSig = m.PaidSat, m.Sig
	return []Effect{
		PersistPayment{ChannelID: m.ChannelID, PaidSat: m.PaidSat, Sig: m.Sig},
		p.send(&paywire.Ack{ChannelID: m.ChannelID, PaidSat: m.PaidSat}),
	}, nil
}

func paymentError(err error) (*ProtocolError, bool) {
	switch {
	case errors.Is(err, ErrDustChange):
		return &ProtocolError{Code: paywire.CodeDustChange, Err: err}, true
	case errors.Is(err, ErrPaymentAboveCapacity):
		return &ProtocolError{Code: paywire.CodePaymentTooHigh, Err: err}, true
	}
	return nil, false
}

// Settlement builds the transaction cashing the best payment.
func (p *Payee) Settlement(s Settlement) (*wire.MsgTx, error) {
	if p.ch == nil || p.bestSat == 0 {
		return nil, fmt.Errorf("%w: nothing to settle", ErrUnexpected)
	}
	return p.ch.SettlementTx(p.cfg.Key, p.bestSat, p.bestSig, s)
}

// Settled tells the payer the channel is closed: after a settlement was
// broadcast (txid), or with an empty txid when nothing was paid. It may
// follow the payer's close or be the payee's own decision (expiry near).
func (p *Payee) Settled(txid string) ([]Effect, error) {
	if p.state != PayeeOpen && p.state != PayeeClosing {
		return nil, fmt.Errorf("%w: settled in state %v", ErrUnexpected, p.state)
	}
	p.state = PayeeClosed
	id := p.ch.ID()
	return []Effect{
		p.send(&paywire.Closed{ChannelID: id, PaidSat: p.bestSat, SettlementTxID: txid}),
		Closed{ChannelID: id, PaidSat: p.bestSat, SettlementTxID: txid},
	}, nil
}
