package channel

import (
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
)

// Effect is something a state machine asks its caller to do. A call returns
// effects in the order they must happen; the caller performs them one after
// another and stops at the first that fails. The order carries the money
// rules: PersistRefund comes before BroadcastFunding, and PersistPayment
// before the Send of the payment (payer) or of its ack (payee).
type Effect interface{ isEffect() }

// Send asks the caller to send a message to the peer.
type Send struct{ Msg paywire.Message }

// TermsReceived (payer) gives the payee's terms: choose coins and a
// capacity, sign a funding transaction, and call Payer.Fund.
type TermsReceived struct{ Terms *Terms }

// PersistRefund (payer) asks to store, durably, everything needed to get the
// pool back: the channel, the signed funding and the complete refund. It
// precedes BroadcastFunding.
type PersistRefund struct{ Record PayerRecord }

// BroadcastFunding (payer) asks to broadcast the funding transaction. It
// only ever follows a PersistRefund of the same channel.
type BroadcastFunding struct{ Tx *wire.MsgTx }

// FundingReceived (payee) gives the signed funding transaction; once the
// chain policy is met (seen, or confirmed), call Payee.FundingAccepted.
type FundingReceived struct {
	Channel *Channel
	Tx      *wire.MsgTx
}

// PersistChannel (payee) asks to store a newly opened channel before the
// open message goes out.
type PersistChannel struct{ Record PayeeRecord }

// ResumeRequested (payee) asks to load a channel from storage and call
// Payee.Resume, or Payee.RefuseResume if it is unknown or closed.
type ResumeRequested struct{ ChannelID string }

// Opened says the channel is ready for payments; PaidSat is what the payee
// holds (non-zero after a resume).
type Opened struct {
	Channel *Channel
	PaidSat int64
}

// PersistPayment asks to store a payment state durably. On the payer it
// precedes the Send of the payment (so it always knows the most the payee
// may hold); on the payee it precedes the ack (nothing acknowledged is lost).
type PersistPayment struct {
	ChannelID string
	PaidSat   int64
	Sig       []byte
}

// Acked (payer) says the payee acknowledged PaidSat.
type Acked struct{ PaidSat int64 }

// SettleRequested (payee) says the payer asked to close: settle the best
// payment (Payee.Settlement) and call Payee.Settled.
type SettleRequested struct {
	ChannelID string
	PaidSat   int64
}

// Closed says the channel was closed; SettlementTxID is empty when nothing
// was paid (the payer takes its refund after expiry).
type Closed struct {
	ChannelID      string
	PaidSat        int64
	SettlementTxID string
}

// PeerError reports an error message received from the peer; the session
// is over.
type PeerError struct{ Msg *paywire.Error }

func (Send) isEffect()             {}
func (TermsReceived) isEffect()    {}
func (PersistRefund) isEffect()    {}
func (BroadcastFunding) isEffect() {}
func (FundingReceived) isEffect()  {}
func (PersistChannel) isEffect()   {}
func (ResumeRequested) isEffect()  {}
func (Opened) isEffect()           {}
func (PersistPayment) isEffect()   {}
func (Acked) isEffect()            {}
func (SettleRequested) isEffect()  {}
func (Closed) isEffect()           {}
func (PeerError) isEffect()        {}

// PayerRecord is what a payer stores of a channel: enough to resume it and
// to take the refund.
type PayerRecord struct {
	Channel   *Channel
	FundingTx *wire.MsgTx // signed
	RefundTx  *wire.MsgTx // complete: both signatures
	SignedSat int64       // highest payment signed (the payee may hold it)
	AckedSat  int64       // highest payment acknowledged
}

// PayeeRecord is what a payee stores of a channel: enough to settle it.
type PayeeRecord struct {
	Channel   *Channel
	FundingTx *wire.MsgTx
	BestSat   int64  // best payment held
	BestSig   []byte // the payer's signature on it
}

// BadMessage renders a decoding failure as the error message to send back.
func BadMessage(version int, err error) *paywire.Error {
	m := &paywire.Error{Code: paywire.CodeBadMessage, Reason: err.Error()}
	if version == 0 {
		version = paywire.Version1
	}
	m.V = version
	return m
}
