package channel

import (
	"bytes"
	"testing"

	"github.com/paysip/paysip/paywire"
)

// FuzzDecodeTx: the transaction decoder never panics, and what it accepts
// re-serializes to the same bytes (round trip).
func FuzzDecodeTx(f *testing.F) {
	e := newEnv(&testing.T{})
	e.open()
	f.Add(serialize(e.broadcast[0]))
	f.Add(serializeNoWitness(e.broadcast[0]))
	f.Add(serialize(e.payer.RefundTx()))
	f.Add([]byte{1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := DecodeTx(b)
		if err != nil {
			return
		}
		var again bytes.Buffer
		if tx.HasWitness() {
			tx.Serialize(&again)
		} else {
			tx.SerializeNoWitness(&again)
		}
		tx2, err := DecodeTx(again.Bytes())
		if err != nil {
			t.Fatalf("re-serialized transaction does not decode: %v", err)
		}
		if tx2.TxHash() != tx.TxHash() || tx2.WitnessHash() != tx.WitnessHash() {
			t.Fatal("round trip changed the transaction")
		}
	})
}

// FuzzPayee feeds arbitrary bytes, as messages, to a payee holding an open
// channel: it never panics, and its best payment only ever changes to a
// larger one carrying a valid signature (checked by btcec's own Verify,
// not the payee's keyed verifier).
func FuzzPayee(f *testing.F) {
	e := newEnv(&testing.T{})
	e.open()
	ch := e.payer.Channel()
	for _, v := range []int64{2000, testCapacity, testCapacity - 100} {
		sig, _ := ch.SignPayment(key("payer channel"), v)
		if sig == nil {
			sig = []byte{1}
		}
		b, _ := paywire.Encode(&paywire.Pay{ChannelID: ch.ID(), PaidSat: v, Sig: sig})
		f.Add(b)
	}
	b, _ := paywire.Encode(&paywire.Close{ChannelID: ch.ID()})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _ := NewPayee(testPayeeConfig())
		p.state, p.version, p.ch, p.funding = PayeeOpen, 1, e.payee.ch, e.payee.funding
		m, err := paywire.Decode(b)
		if err != nil {
			return
		}
		p.Handle(m)
		if p.bestSat != 0 {
			if err := stockVerifyPayment(p.ch, p.bestSat, p.bestSig); err != nil {
				t.Fatalf("payee keeps an invalid payment of %d: %v", p.bestSat, err)
			}
		}
	})
}
