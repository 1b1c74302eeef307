package channel

import (
	"errors"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// stockVerifyPayment is VerifyPayment with btcec's own Verify in place of
// the payer key's precomputed verifier: the reference the keyed path must
// agree with.
func stockVerifyPayment(c *Channel, paid int64, sig []byte) error {
	tx, ht, err := c.PaymentTx(paid)
	if err != nil {
		return err
	}
	h, err := c.sigHash(tx, ht)
	if err != nil {
		return err
	}
	return verifySig(sig, ht, h, c.PayerKey)
}

// TestVerifyPaymentMatchesStock: the payee's keyed check accepts and refuses
// exactly what btcec's Verify does, for valid payments and mutated ones
// (every bit of the signature flipped in turn, another amount, a high S,
// another key), with the same error.
func TestVerifyPaymentMatchesStock(t *testing.T) {
	e := newEnv(t)
	e.open()
	ch := e.payee.Channel()
	payer := key("payer channel")
	for _, paid := range []int64{1000, 123_456, testCapacity} {
		sig, err := ch.SignPayment(payer, paid)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.VerifyPayment(paid, sig); err != nil {
			t.Fatalf("valid payment of %d refused: %v", paid, err)
		}
		var variants [][]byte
		for bit := range 8 * len(sig) {
			m := append([]byte(nil), sig...)
			m[bit/8] ^= 1 << (bit % 8)
			variants = append(variants, m)
		}
		// High S: the same signature with s replaced by N-s.
		s, _ := ecdsa.ParseDERSignature(sig[:len(sig)-1])
		variants = append(variants, append(highS(t, s), sig[len(sig)-1]))
		other, _ := ch.SignPayment(key("someone else"), paid)
		variants = append(variants, other)
		for i, m := range variants {
			for _, amount := range []int64{paid, paid - 1} {
				got, want := ch.VerifyPayment(amount, m), stockVerifyPayment(ch, amount, m)
				if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
					t.Fatalf("variant %d of %d, checked for %d: keyed %v, stock %v", i, paid, amount, got, want)
				}
				if got == nil {
					t.Fatalf("variant %d of %d accepted for %d", i, paid, amount)
				}
			}
		}
	}
}

// highS returns the DER of (r, N-s).
func highS(t *testing.T, s *ecdsa.Signature) []byte {
	der := s.Serialize()
	rlen := int(der[3])
	r, sb := der[4:4+rlen], der[6+rlen:]
	var sv btcec.ModNScalar
	for len(sb) > 0 && sb[0] == 0 {
		sb = sb[1:]
	}
	sv.SetByteSlice(sb)
	sv.Negate()
	ns := sv.Bytes()
	hi := ns[:]
	for len(hi) > 0 && hi[0] == 0 {
		hi = hi[1:]
	}
	if hi[0]&0x80 != 0 {
		hi = append([]byte{0}, hi...)
	}
	out := []byte{0x30, byte(4 + len(r) + len(hi)), 0x02, byte(len(r))}
	out = append(out, r...)
	out = append(out, 0x02, byte(len(hi)))
	out = append(out, hi...)
	if _, err := ecdsa.ParseDERSignature(out); err != nil {
		t.Fatalf("high-S DER does not parse: %v", err)
	}
	return out
}

// TestVerifierFollowsPayerKey: the cached verifier never answers for a key
// the channel no longer has. An equal key (parsed again) keeps it; another
// key replaces it.
func TestVerifierFollowsPayerKey(t *testing.T) {
	e := newEnv(t)
	e.open()
	ch := e.payee.Channel()
	sigA, _ := ch.SignPayment(key("payer channel"), 5000)
	sigB, _ := ch.SignPayment(key("someone else"), 5000)
	if err := ch.VerifyPayment(5000, sigA); err != nil {
		t.Fatal(err)
	}
	built := ch.payerVerifier.Load()
	if built == nil || !built.For(ch.PayerKey) {
		t.Fatal("no verifier cached for the payer key")
	}
	same, _ := btcec.ParsePubKey(ch.PayerKey.SerializeCompressed())
	ch.PayerKey = same
	if err := ch.VerifyPayment(5000, sigA); err != nil || ch.payerVerifier.Load() != built {
		t.Fatalf("an equal key: %v, verifier rebuilt %v", err, ch.payerVerifier.Load() != built)
	}
	orig := ch.PayerKey
	ch.PayerKey = key("someone else").PubKey()
	if err := ch.VerifyPayment(5000, sigA); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("the old key's signature after the key changed: %v", err)
	}
	if err := ch.VerifyPayment(5000, sigB); err != nil {
		t.Fatalf("the new key's signature: %v", err)
	}
	ch.PayerKey = orig
	if err := ch.VerifyPayment(5000, sigB); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("after the key is restored, the other key's signature: %v", err)
	}
}

// TestVerifyPaymentConcurrent: first verifications racing to build the
// verifier (run with -race).
func TestVerifyPaymentConcurrent(t *testing.T) {
	e := newEnv(t)
	e.open()
	ch := e.payee.Channel()
	sig, _ := ch.SignPayment(key("payer channel"), 7000)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- ch.VerifyPayment(7000, sig) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifierBuiltAtOpen: the payee builds the payer key's verifier when
// the channel opens, not in the first payment's round trip.
func TestVerifierBuiltAtOpen(t *testing.T) {
	e := newEnv(t)
	e.open()
	ch := e.payee.Channel()
	v := ch.payerVerifier.Load()
	if v == nil || !v.For(ch.PayerKey) {
		t.Fatal("no verifier for the payer key once the channel is open")
	}
	if err := e.pay(3000); err != nil {
		t.Fatal(err)
	}
	if ch.payerVerifier.Load() != v {
		t.Fatal("the verifier was rebuilt by a payment")
	}
}
