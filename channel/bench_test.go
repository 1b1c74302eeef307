package channel

import (
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/paywire"
)

// BenchmarkPayerSign measures the payer's step: build the payment
// transaction, compute its BIP143 sighash, sign.
func BenchmarkPayerSign(b *testing.B) {
	e := newEnv(&testing.T{})
	e.open()
	ch, k := e.payer.Channel(), key("payer channel")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ch.SignPayment(k, int64(1000+i%1_000_000)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPayeeCheck measures the payee's check of one payment: rebuild
// the transaction, sighash, parse and verify the signature directly (no
// script engine), as onPay does.
func BenchmarkPayeeCheck(b *testing.B) {
	e := newEnv(&testing.T{})
	e.open()
	ch := e.payee.Channel()
	sig, _ := ch.SignPayment(key("payer channel"), 123_456)
	b.ReportAllocs()
	for b.Loop() {
		if err := ch.VerifyPayment(123_456, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPayeeHandlePay measures the payee's whole handling of a pay
// message (rules, verification, effects), without storage or transport.
func BenchmarkPayeeHandlePay(b *testing.B) {
	e := newEnv(&testing.T{})
	e.open()
	ch, k := e.payer.Channel(), key("payer channel")
	const n = 4096
	msgs := make([]*paywire.Pay, n)
	for i := range msgs {
		v := int64(1000 + i)
		sig, _ := ch.SignPayment(k, v)
		msgs[i] = &paywire.Pay{Header: paywire.Header{V: 1}, ChannelID: ch.ID(), PaidSat: v, Sig: sig}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%n == 0 {
			b.StopTimer()
			e.payee.bestSat = 0
			b.StartTimer()
		}
		if _, err := e.payee.Handle(msgs[i%n]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScriptEngineSettlement is the comparison: a full script engine
// run of the 2-of-2 witness, which the hot path avoids.
func BenchmarkScriptEngineSettlement(b *testing.B) {
	e := newEnv(&testing.T{})
	e.open()
	e.pay(50_000)
	tx, _ := e.settle()
	prev := e.fundingPrev()
	for b.Loop() {
		if err := execute(tx, 0, prev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyECDSA is the floor under BenchmarkPayeeCheck: one raw
// ECDSA verification (a parsed signature against a parsed key and a
// 32-byte hash), with no transaction, sighash or parsing around it.
func BenchmarkVerifyECDSA(b *testing.B) {
	k := key("payer channel")
	hash := chainhash.HashB([]byte("paysip"))
	sig := ecdsa.Sign(k, hash)
	pub := k.PubKey()
	b.ReportAllocs()
	for b.Loop() {
		if !sig.Verify(hash, pub) {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkSignECDSA is the floor under BenchmarkPayerSign.
func BenchmarkSignECDSA(b *testing.B) {
	k := key("payer channel")
	hash := chainhash.HashB([]byte("paysip"))
	b.ReportAllocs()
	for b.Loop() {
		ecdsa.Sign(k, hash)
	}
}

// BenchmarkParseVerify is the signature part of the payee's check: parse
// the DER signature and the key, then verify.
func BenchmarkParseVerify(b *testing.B) {
	k := key("payer channel")
	hash := chainhash.HashB([]byte("paysip"))
	der := ecdsa.Sign(k, hash).Serialize()
	pubBytes := k.PubKey().SerializeCompressed()
	b.ReportAllocs()
	for b.Loop() {
		sig, err := ecdsa.ParseDERSignature(der)
		if err != nil {
			b.Fatal(err)
		}
		pub, err := btcec.ParsePubKey(pubBytes)
		if err != nil {
			b.Fatal(err)
		}
		if !sig.Verify(hash, pub) {
			b.Fatal("does not verify")
		}
	}
}
