package channel

import (
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sat"
)

// Terms is a payee's offer (the seed's step 1: the payer learns the payee's
// key), with everything the payee will check later.
type Terms struct {
	PayeeKey        *btcec.PublicKey
	PriceSatPerMin  int64  // price of one minute of call
	PayoutScript    []byte // where the payee is paid at settlement (informational for the payer)
	MinChannelSat   int64  // smallest pool accepted
	MinExpiryHeight uint32 // refund lock time window, absolute block heights
	MaxExpiryHeight uint32
	MinPaymentSat   int64 // smallest first payment: keeps a settlement above dust and its fee
	MinStepSat      int64 // smallest increment of later payments (except the one emptying the pool)
}

// Validate checks the terms' values.
func (t *Terms) Validate() error {
	if t.PayeeKey == nil {
		return fmt.Errorf("%w: no payee key", ErrBadTerms)
	}
	for name, v := range map[string]int64{"price": t.PriceSatPerMin, "min channel": t.MinChannelSat, "min payment": t.MinPaymentSat, "min step": t.MinStepSat} {
		if err := sat.Check(v); err != nil || v == 0 {
			return fmt.Errorf("%w: %s %d", ErrBadTerms, name, v)
		}
	}
	if t.MinExpiryHeight == 0 || t.MaxExpiryHeight < t.MinExpiryHeight || t.MaxExpiryHeight >= lockTimeThreshold {
		return fmt.Errorf("%w: expiry window [%d, %d]", ErrBadTerms, t.MinExpiryHeight, t.MaxExpiryHeight)
	}
	if !standardPayout(t.PayoutScript) {
		return fmt.Errorf("%w: payout script %x is not a standard output", ErrBadTerms, t.PayoutScript)
	}
	if t.MinPaymentSat > t.MinChannelSat {
		return fmt.Errorf("%w: min payment %d above min channel %d", ErrBadTerms, t.MinPaymentSat, t.MinChannelSat)
	}
	return nil
}

// Wire renders the terms as a message.
func (t Terms) Wire(version int) *paywire.Terms {
	m := &paywire.Terms{
		PayeeKey: t.PayeeKey.SerializeCompressed(), PriceSatPerMin: t.PriceSatPerMin, PayoutScript: t.PayoutScript,
		MinChannelSat: t.MinChannelSat, MinExpiryHeight: t.MinExpiryHeight, MaxExpiryHeight: t.MaxExpiryHeight,
		MinPaymentSat: t.MinPaymentSat, MinStepSat: t.MinStepSat,
	}
	m.V = version
	return m
}

// TermsFromWire parses and validates a terms message.
func TermsFromWire(m *paywire.Terms) (*Terms, error) {
	k, err := ParseKey(m.PayeeKey)
	if err != nil {
		return nil, err
	}
	t := &Terms{
		PayeeKey: k, PriceSatPerMin: m.PriceSatPerMin, PayoutScript: m.PayoutScript,
		MinChannelSat: m.MinChannelSat, MinExpiryHeight: m.MinExpiryHeight, MaxExpiryHeight: m.MaxExpiryHeight,
		MinPaymentSat: m.MinPaymentSat, MinStepSat: m.MinStepSat,
	}
	return t, t.Validate()
}

// Owed returns what a caller owes for started seconds of call at
// priceSatPerMin: ceil(price * seconds / 60) satoshis, computed from the
// total each time (never by summing rounded per-second amounts), so that
// there is no drift however long the call.
func Owed(priceSatPerMin, seconds int64) (int64, error) {
	return sat.MulDivCeil(priceSatPerMin, seconds, 60)
}
