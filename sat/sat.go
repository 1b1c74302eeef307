// Package sat holds checked integer arithmetic on satoshi amounts.
//
// Every amount in paysip is an int64 number of satoshis. Floats never touch
// money. The helpers here refuse negative results where they make no sense
// and any result beyond the 21 million bitcoin supply, so an overflow can
// never wrap around into a plausible-looking value.
package sat

import (
	"errors"
	"fmt"
	"math/bits"
)

// MaxMoney is the largest amount that can ever exist: 21,000,000 BTC in
// satoshis (btcutil.MaxSatoshi).
const MaxMoney int64 = 21_000_000 * 100_000_000

// ErrOutOfRange is returned (wrapped) when an amount or the result of
// arithmetic on amounts is negative or above MaxMoney.
var ErrOutOfRange = errors.New("amount out of range")

// Check reports whether a is a valid amount: 0 <= a <= MaxMoney.
func Check(a int64) error {
	if a < 0 || a > MaxMoney {
		return fmt.Errorf("%w: %d sat", ErrOutOfRange, a)
	}
	return nil
}

// Add returns a+b, both valid amounts, or an error if the sum leaves range.
func Add(a, b int64) (int64, error) {
	if err := Check(a); err != nil {
		return 0, err
	}
	if err := Check(b); err != nil {
		return 0, err
	}
	// Both are <= MaxMoney (< 2^51), so the sum cannot overflow int64.
	s := a + b
	return s, Check(s)
}

// Sub returns a-b for valid amounts, or an error if the result is negative.
func Sub(a, b int64) (int64, error) {
	if err := Check(a); err != nil {
		return 0, err
	}
	if err := Check(b); err != nil {
		return 0, err
	}
	d := a - b
	if d < 0 {
		return 0, fmt.Errorf("%w: %d - %d is negative", ErrOutOfRange, a, b)
	}
	return d, nil
}

// Sum adds a list of amounts with the same checks as Add.
func Sum(as ...int64) (int64, error) {
	var total int64
	for _, a := range as {
		var err error
		if total, err = Add(total, a); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// MulDivCeil returns ceil(a*b/d) for non-negative a, b and positive d,
// computed in 128 bits so the product cannot overflow, and checks that the
// result is a valid amount.
func MulDivCeil(a, b, d int64) (int64, error) {
	if a < 0 || b < 0 || d <= 0 {
		return 0, fmt.Errorf("%w: MulDivCeil(%d, %d, %d)", ErrOutOfRange, a, b, d)
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(d) {
		return 0, fmt.Errorf("%w: %d * %d / %d overflows", ErrOutOfRange, a, b, d)
	}
	q, r := bits.Div64(hi, lo, uint64(d))
	if r != 0 {
		if q == ^uint64(0) {
			return 0, fmt.Errorf("%w: %d * %d / %d overflows", ErrOutOfRange, a, b, d)
		}
		q++
	}
	if q > uint64(MaxMoney) {
		return 0, fmt.Errorf("%w: %d * %d / %d = %d sat", ErrOutOfRange, a, b, d, q)
	}
	return int64(q), nil
}
