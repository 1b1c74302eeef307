package paywire

import (
	"crypto/sha256"
	"fmt"
)

// Message type names, the values of the JSON "type" field.
const (
	TypeHello         = "hello"
	TypeTerms         = "terms"
	TypeResumeProof   = "resume_proof"
	TypeRefundRequest = "refund_request"
	TypeRefundSigned  = "refund_signed"
	TypeFunded        = "funded"
	TypeOpen          = "open"
	TypePay           = "pay"
	TypeAck           = "ack"
	TypeClose         = "close"
	TypeClosed        = "closed"
	TypeError         = "error"
)

var registry = map[string]func() Message{
	TypeHello:         func() Message { return new(Hello) },
	TypeTerms:         func() Message { return new(Terms) },
	TypeResumeProof:   func() Message { return new(ResumeProof) },
	TypeRefundRequest: func() Message { return new(RefundRequest) },
	TypeRefundSigned:  func() Message { return new(RefundSigned) },
	TypeFunded:        func() Message { return new(Funded) },
	TypeOpen:          func() Message { return new(Open) },
	TypePay:           func() Message { return new(Pay) },
	TypeAck:           func() Message { return new(Ack) },
	TypeClose:         func() Message { return new(Close) },
	TypeClosed:        func() Message { return new(Closed) },
	TypeError:         func() Message { return new(Error) },
}

// maxVersions bounds the list in a hello.
const maxVersions = 16

// maxText bounds free-text fields (reasons, agent names).
const maxText = 1024

// Hello opens a session, payer to payee. Its shape is frozen across
// versions: "v" is always 1 and Versions lists every version the sender
// speaks, so that the payee can pick the highest common one (Negotiate).
// Resume names an open channel to pay from again (no new funding).
type Hello struct {
	Header
	Versions []int  `json:"versions"`
	Resume   string `json:"resume,omitempty"`
	Agent    string `json:"agent,omitempty"`
}

// Terms is the payee's offer, the answer to a hello. Its "v" is the
// negotiated version, which both sides then use.
type Terms struct {
	Header
	PayeeKey        Hex    `json:"payee_key"`         // compressed secp256k1 key for the 2-of-2
	PriceSatPerMin  int64  `json:"price_sat_per_min"` // price of a minute of call
	PayoutScript    Hex    `json:"payout_script"`     // where the payee will be paid at settlement
	MinChannelSat   int64  `json:"min_channel_sat"`   // smallest pool accepted
	MinExpiryHeight uint32 `json:"min_expiry_height"` // refund lock time window, block heights
	MaxExpiryHeight uint32 `json:"max_expiry_height"`
	MinPaymentSat   int64  `json:"min_payment_sat"` // smallest first payment (dust and fee floor)
	MinStepSat      int64  `json:"min_step_sat"`    // smallest increment of later payments
	// Challenge, sent only in answer to a hello that resumes a channel:
	// 32 random bytes the payer must sign with the channel's payer key
	// (resume_proof) before the payee reopens the channel.
	Challenge Hex `json:"challenge,omitempty"`
}

// ResumeProof proves, payer to payee, that the sender holds the payer key
// of the channel it resumes: Sig is a DER ECDSA signature of
// ResumeDigest(channel id, challenge, payee key) by that key.
type ResumeProof struct {
	Header
	ChannelID string `json:"channel_id"`
	Sig       Hex    `json:"sig"`
}

// RefundRequest carries the prepared (unbroadcast) funding transaction,
// stripped of its witnesses so the payee cannot broadcast it, and the
// unsigned refund, payer to payee.
type RefundRequest struct {
	Header
	PayerKey    Hex    `json:"payer_key"`
	FundingTx   Hex    `json:"funding_tx"` // serialized without witness data
	FundingVout uint32 `json:"funding_vout"`
	RefundTx    Hex    `json:"refund_tx"`
}

// RefundSigned returns the payee's signature on the refund, payee to payer.
type RefundSigned struct {
	Header
	ChannelID string `json:"channel_id"`
	Sig       Hex    `json:"sig"` // DER signature + sighash byte (SIGHASH_ALL)
}

// Funded tells the payee that the funding was broadcast, with the signed
// transaction, payer to payee.
type Funded struct {
	Header
	ChannelID string `json:"channel_id"`
	FundingTx Hex    `json:"funding_tx"` // with witnesses
}

// Open says the channel is ready for payments, payee to payer; after a
// resume PaidSat is the best payment the payee holds.
type Open struct {
	Header
	ChannelID    string `json:"channel_id"`
	CapacitySat  int64  `json:"capacity_sat"`
	PaidSat      int64  `json:"paid_sat"`
	ExpiryHeight uint32 `json:"expiry_height"`
}

// Pay is a new payment state, payer to payee: the payee is now owed PaidSat
// in total, and Sig is the payer's signature on the payment transaction.
type Pay struct {
	Header
	ChannelID string `json:"channel_id"`
	PaidSat   int64  `json:"paid_sat"`
	Sig       Hex    `json:"sig"` // DER + SIGHASH_SINGLE|ANYONECANPAY, or NONE|ANYONECANPAY when nothing is left
}

// Ack acknowledges a payment that the payee has stored durably, payee to
// payer; PaidSat is the value now held.
type Ack struct {
	Header
	ChannelID string `json:"channel_id"`
	PaidSat   int64  `json:"paid_sat"`
}

// Close asks the payee to settle and close the channel, payer to payee.
type Close struct {
	Header
	ChannelID string `json:"channel_id"`
	Reason    string `json:"reason,omitempty"`
}

// Closed says the payee has settled (or, with no payment, abandoned) the
// channel, payee to payer.
type Closed struct {
	Header
	ChannelID      string `json:"channel_id"`
	PaidSat        int64  `json:"paid_sat"`
	SettlementTxID string `json:"settlement_txid,omitempty"`
}

// Error reports a refusal, either direction. Expected, when present, is the
// value the sender wanted (the best payment held, the lowest acceptable...).
type Error struct {
	Header
	Code      string `json:"code"`
	Reason    string `json:"reason"`
	ChannelID string `json:"channel_id,omitempty"`
	Expected  *int64 `json:"expected,omitempty"`
}

// Error codes carried by Error.Code. docs/protocol.md explains each.
const (
	CodeBadMessage         = "bad_message"
	CodeUnsupportedVersion = "unsupported_version"
	CodeUnexpected         = "unexpected_message"
	CodeBadTerms           = "bad_terms"
	CodeBadFunding         = "bad_funding"
	CodeBadRefund          = "bad_refund"
	CodeBadPayment         = "bad_payment"
	CodePaymentTooLow      = "payment_too_low"
	CodePaymentTooHigh     = "payment_too_high"
	CodeDustChange         = "dust_change"
	CodeBadSighash         = "bad_sighash"
	CodeBadSignature       = "bad_signature"
	CodeUnknownChannel     = "unknown_channel"
	CodeChannelClosed      = "channel_closed"
	CodeChannelBusy        = "channel_busy"
	CodePaymentLate        = "payment_late"
	CodeInternal           = "internal"
)

// Type implements Message.
func (*Hello) Type() string         { return TypeHello }
func (*Terms) Type() string         { return TypeTerms }
func (*ResumeProof) Type() string   { return TypeResumeProof }
func (*RefundRequest) Type() string { return TypeRefundRequest }
func (*RefundSigned) Type() string  { return TypeRefundSigned }
func (*Funded) Type() string        { return TypeFunded }
func (*Open) Type() string          { return TypeOpen }
func (*Pay) Type() string           { return TypePay }
func (*Ack) Type() string           { return TypeAck }
func (*Close) Type() string         { return TypeClose }
func (*Closed) Type() string        { return TypeClosed }
func (*Error) Type() string         { return TypeError }

func text(field, s string) *DecodeError {
	if len(s) > maxText {
		return badField(field, fmt.Sprintf("longer than %d bytes", maxText))
	}
	return nil
}

func (m *Hello) validate() *DecodeError {
	if m.V != Version1 {
		return badField("v", "hello is always version 1; list newer versions in \"versions\"")
	}
	if len(m.Versions) == 0 || len(m.Versions) > maxVersions {
		return badField("versions", fmt.Sprintf("want 1 to %d versions", maxVersions))
	}
	for _, v := range m.Versions {
		if v <= 0 {
			return badField("versions", "versions are positive integers")
		}
	}
	if m.Resume != "" {
		if de := channelID("resume", m.Resume); de != nil {
			return de
		}
	}
	return text("agent", m.Agent)
}

func (m *Terms) validate() *DecodeError {
	if len(m.PayeeKey) != 33 {
		return badField("payee_key", "want a 33-byte compressed public key")
	}
	if len(m.Challenge) != 0 && len(m.Challenge) != ChallengeSize {
		return badField("challenge", fmt.Sprintf("want %d bytes", ChallengeSize))
	}
	if m.MaxExpiryHeight < m.MinExpiryHeight {
		return badField("max_expiry_height", "below min_expiry_height")
	}
	return first(
		positive("price_sat_per_min", m.PriceSatPerMin),
		nonEmpty("payout_script", m.PayoutScript),
		positive("min_channel_sat", m.MinChannelSat),
		positive("min_payment_sat", m.MinPaymentSat),
		positive("min_step_sat", m.MinStepSat),
	)
}

func (m *ResumeProof) validate() *DecodeError {
	if len(m.Sig) > 72 {
		return badField("sig", "longer than a DER signature")
	}
	return first(channelID("channel_id", m.ChannelID), nonEmpty("sig", m.Sig))
}

func (m *RefundRequest) validate() *DecodeError {
	if len(m.PayerKey) != 33 {
		return badField("payer_key", "want a 33-byte compressed public key")
	}
	return first(nonEmpty("funding_tx", m.FundingTx), nonEmpty("refund_tx", m.RefundTx))
}

func (m *RefundSigned) validate() *DecodeError {
	return first(channelID("channel_id", m.ChannelID), nonEmpty("sig", m.Sig))
}

func (m *Funded) validate() *DecodeError {
	return first(channelID("channel_id", m.ChannelID), nonEmpty("funding_tx", m.FundingTx))
}

func (m *Open) validate() *DecodeError {
	return first(channelID("channel_id", m.ChannelID), positive("capacity_sat", m.CapacitySat), amount("paid_sat", m.PaidSat))
}

func (m *Pay) validate() *DecodeError {
	return first(channelID("channel_id", m.ChannelID), positive("paid_sat", m.PaidSat), nonEmpty("sig", m.Sig))
}

func (m *Ack) validate() *DecodeError {
	return first(channelID("channel_id", m.ChannelID), positive("paid_sat", m.PaidSat))
}

func (m *Close) validate() *DecodeError {
	return first(channelID("channel_id", m.ChannelID), text("reason", m.Reason))
}

func (m *Closed) validate() *DecodeError {
	if m.SettlementTxID != "" && !ValidChannelID(m.SettlementTxID+":0") {
		return badField("settlement_txid", "want 64 lower-case hex digits")
	}
	return first(channelID("channel_id", m.ChannelID), amount("paid_sat", m.PaidSat))
}

func (m *Error) validate() *DecodeError {
	if m.Code == "" {
		return badField("code", "must not be empty")
	}
	if m.ChannelID != "" {
		if de := channelID("channel_id", m.ChannelID); de != nil {
			return de
		}
	}
	if m.Expected != nil {
		if de := amount("expected", *m.Expected); de != nil {
			return de
		}
	}
	return first(text("code", m.Code), text("reason", m.Reason))
}

// ChallengeSize is the length of a resume challenge.
const ChallengeSize = 32

// ResumeDigest is the hash a payer signs to prove it holds a channel's
// payer key when resuming it: SHA-256 of a fixed tag, the channel id, the
// payee's challenge and the payee's channel key (compressed). The tag keeps
// it apart from any transaction sighash, so the signature can never be
// reused to spend coins; the challenge makes each proof single-use.
func ResumeDigest(channelID string, challenge, payeeKey []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("paysip/resume/1\x00"))
	h.Write([]byte(channelID))
	h.Write([]byte{0})
	h.Write(challenge)
	h.Write(payeeKey)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
