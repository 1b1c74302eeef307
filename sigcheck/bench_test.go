package sigcheck

import (
	"math/rand/v2"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// benchSigs returns one key and n signatures by it of distinct hashes.
func benchSigs(b *testing.B, n int) (*btcec.PrivateKey, []*ecdsa.Signature, [][]byte) {
	rng := rand.New(rand.NewPCG(21, 22))
	priv := randKey(b, rng)
	sigs, hashes := make([]*ecdsa.Signature, n), make([][]byte, n)
	for i := range sigs {
		hashes[i] = randBytes(rng, 32)
		sigs[i] = ecdsa.Sign(priv, hashes[i])
	}
	return priv, sigs, hashes
}

// BenchmarkKeyVerify is one verification with the key's table built.
func BenchmarkKeyVerify(b *testing.B) {
	priv, sigs, hashes := benchSigs(b, 64)
	v := New(priv.PubKey())
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if !v.Verify(sigs[i%64], hashes[i%64]) {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkStockVerify is the same verification by btcec (dcrd) itself.
func BenchmarkStockVerify(b *testing.B) {
	priv, sigs, hashes := benchSigs(b, 64)
	pub := priv.PubKey()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if !sigs[i%64].Verify(hashes[i%64], pub) {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkNewKeyVerifier is the one-time cost of a key's table.
func BenchmarkNewKeyVerifier(b *testing.B) {
	priv, _, _ := benchSigs(b, 1)
	pub := priv.PubKey()
	b.ReportAllocs()
	for b.Loop() {
		New(pub)
	}
}
