// Package paywire is the codec of the paysip payment protocol: versioned JSON
// messages exchanged between a payer and a payee, one message per WebRTC
// DataChannel message or per SIP MESSAGE body (content type
// application/vnd.paysip+json).
//
// The package knows nothing of Bitcoin semantics: it checks the shape of a
// message (known version and type, every required field present, amounts
// integral and within 0..21e14 satoshis, identifiers well formed, size
// bounded) and leaves the meaning (is this signature valid, is this payment
// larger than the last) to package channel. docs/protocol.md is the
// specification; every message type has an example there.
//
// Decode rejects bad input with a *DecodeError whose Kind is one of the
// sentinel errors (ErrTooLarge, ErrMalformed, ErrUnknownVersion,
// ErrUnknownType, ErrMissingField, ErrBadAmount, ErrBadField), so callers
// can answer the peer with a readable reason:
//
//	m, err := paywire.Decode(b)
//	if err != nil {
//		var de *paywire.DecodeError
//		errors.As(err, &de) // de.Kind, de.Field, de.Reason
//	}
package paywire
