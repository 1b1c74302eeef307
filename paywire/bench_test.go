package paywire

import (
	"bytes"
	"testing"
)

// payBytes is a pay message as a payer sends it (a 72-byte DER signature
// and its sighash byte).
func payBytes(b *testing.B) []byte {
	m, err := Encode(&Pay{ChannelID: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0", PaidSat: 123_456, Sig: bytes.Repeat([]byte{0x30}, 73)})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkDecodePay is the payee's decoding of each payment.
func BenchmarkDecodePay(b *testing.B) {
	msg := payBytes(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeAck is the payee's encoding of each ack.
func BenchmarkEncodeAck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(&Ack{ChannelID: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0", PaidSat: 123_456}); err != nil {
			b.Fatal(err)
		}
	}
}
