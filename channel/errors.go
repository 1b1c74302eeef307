package channel

import (
	"errors"
	"fmt"

	"github.com/paysip/paysip/paywire"
)

// Sentinel errors. Every refusal the package returns wraps one of them (in a
// *ProtocolError when a peer is at fault), so callers and tests can tell
// refusals apart with errors.Is.
var (
	ErrBadKey               = errors.New("invalid public key")
	ErrBadTerms             = errors.New("unacceptable terms")
	ErrAmount               = errors.New("amount out of range")
	ErrFundingScript        = errors.New("funding output does not pay the 2-of-2 of payer and payee")
	ErrFundingMalleable     = errors.New("funding transaction is not a fully signed segwit transaction")
	ErrFundingTooSmall      = errors.New("channel below the payee's minimum")
	ErrFundingMismatch      = errors.New("funding transaction differs from the one announced")
	ErrRefundShape          = errors.New("refund must have exactly one input and one output")
	ErrRefundOutpoint       = errors.New("refund does not spend the announced funding outpoint")
	ErrRefundFinal          = errors.New("refund input sequence is final: the time lock would not bind")
	ErrRefundLockTooNear    = errors.New("refund lock time before the accepted window")
	ErrRefundLockTooFar     = errors.New("refund lock time after the accepted window")
	ErrRefundPaysElsewhere  = errors.New("refund does not pay the pool back to a standard payer script")
	ErrWrongChannel         = errors.New("message for another channel")
	ErrPaymentNotAbove      = errors.New("payment not above the best payment held")
	ErrPaymentBelowMin      = errors.New("payment below the minimum first payment or step")
	ErrPaymentAboveCapacity = errors.New("payment above the channel capacity")
	ErrDustChange           = errors.New("payer change would be dust")
	ErrBadSighash           = errors.New("wrong sighash type")
	ErrBadSignature         = errors.New("invalid signature")
	ErrUnexpected           = errors.New("message not expected in this state")
	ErrPaymentInFlight      = errors.New("a payment is already waiting for its ack")
	ErrAckMismatch          = errors.New("ack does not match the payment in flight")
	ErrChannelClosed        = errors.New("channel is closed")
	ErrVersion              = errors.New("no common protocol version")
	ErrResume               = errors.New("channel cannot be resumed")
	ErrSettlementDust       = errors.New("settlement payout would be dust after its fee")
	ErrPeer                 = errors.New("peer reported an error")
)

// ProtocolError is a refusal of something the peer sent or asked. It
// carries the wire error code, a readable reason and, where it helps, the
// value the refusing side expected. Handle methods return it and also queue
// the matching paywire.Error for the peer.
type ProtocolError struct {
	Code     string // paywire.Code*
	Err      error  // one of the sentinels above
	Reason   string // detail for humans
	Expected *int64 // e.g. the best payment held
}

func (e *ProtocolError) Error() string {
	s := e.Err.Error()
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Expected != nil {
		s += fmt.Sprintf(" (expected %d)", *e.Expected)
	}
	return s
}

// Unwrap lets errors.Is match the sentinel.
func (e *ProtocolError) Unwrap() error { return e.Err }

// Wire renders the error as the message sent to the peer.
func (e *ProtocolError) Wire(version int, channelID string) *paywire.Error {
	m := &paywire.Error{Code: e.Code, Reason: e.Error(), ChannelID: channelID, Expected: e.Expected}
	m.V = version
	return m
}

func perr(code string, err error, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Err: err, Reason: fmt.Sprintf(format, args...)}
}

func (e *ProtocolError) expect(v int64) *ProtocolError {
	e.Expected = &v
	return e
}
