package channel

import (
	"errors"
	"math"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
)

// signRaw signs the payment transaction of ch for paid with any key and
// sighash type, bypassing the payer's own rules, as a cheat would.
func signRaw(t *testing.T, ch *Channel, k *btcec.PrivateKey, change int64, ht txscript.SigHashType) []byte {
	tx := wire.NewMsgTx(txVersion)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: ch.Outpoint, Sequence: PaymentSequence})
	if change > 0 {
		tx.AddTxOut(wire.NewTxOut(change, ch.PayerScript))
	}
	h, err := ch.sigHash(tx, ht)
	if err != nil {
		t.Fatal(err)
	}
	return sign(k, h, ht)
}

// refundRequest builds a legitimate refund request for a payee waiting for
// one, then lets mutate spoil it.
func refundRequest(t *testing.T, e *env, mutate func(funding, refund *wire.MsgTx, req *paywire.RefundRequest)) *paywire.RefundRequest {
	funding := e.fundingTx(testCapacity)
	payer := key("payer channel")
	ch, err := NewChannel(wire.OutPoint{Hash: funding.TxHash()}, testCapacity, payer.PubKey(), e.payee.cfg.Terms.PayeeKey, testTip+100, p2wpkh(e.payerWallet))
	if err != nil {
		t.Fatal(err)
	}
	refund, err := ch.RefundTx(500)
	if err != nil {
		t.Fatal(err)
	}
	req := &paywire.RefundRequest{PayerKey: payer.PubKey().SerializeCompressed(), FundingVout: 0}
	req.V = 1
	if mutate != nil {
		mutate(funding, refund, req)
	}
	req.FundingTx, req.RefundTx = serializeNoWitness(funding), serialize(refund)
	return req
}

// TestMaliciousInputs: each way of cheating or garbling is refused with
// its own error and a wire code, and nothing is acknowledged.
func TestMaliciousInputs(t *testing.T) {
	other := key("stranger")

	payeeCases := []struct {
		name string
		// msg builds the message sent to a payee; open says whether the
		// channel must be open (with 5,000 sat paid) first.
		open bool
		msg  func(t *testing.T, e *env) paywire.Message
		want error
		code string
	}{
		{"payer key not on the curve", false, func(t *testing.T, e *env) paywire.Message {
			r := refundRequest(t, e, nil)
			r.PayerKey = append([]byte{2}, make([]byte, 32)...)
			return r
		}, ErrBadKey, paywire.CodeBadFunding},
		{"funding to another script", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(f, r *wire.MsgTx, _ *paywire.RefundRequest) { f.TxOut[0].PkScript = p2wpkh(other) })
		}, ErrFundingScript, paywire.CodeBadFunding},
		{"funding to a 2-of-2 with another payee key", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(f, r *wire.MsgTx, _ *paywire.RefundRequest) {
				ws, _ := MultisigScript(key("payer channel").PubKey(), other.PubKey())
				f.TxOut[0].PkScript = P2WSH(ws)
			})
		}, ErrFundingScript, paywire.CodeBadFunding},
		{"funding output index out of range", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, _ *wire.MsgTx, q *paywire.RefundRequest) { q.FundingVout = 9 })
		}, ErrFundingScript, paywire.CodeBadFunding},
		{"funding amount overflowing", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(f, _ *wire.MsgTx, _ *paywire.RefundRequest) { f.TxOut[0].Value = math.MaxInt64 })
		}, ErrAmount, paywire.CodeBadFunding},
		{"funding below the minimum channel", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(f, _ *wire.MsgTx, _ *paywire.RefundRequest) { f.TxOut[0].Value = testMinChannel - 1 })
		}, ErrFundingTooSmall, paywire.CodeBadFunding},
		{"refund with final sequence", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.TxIn[0].Sequence = wire.MaxTxInSequenceNum })
		}, ErrRefundFinal, paywire.CodeBadRefund},
		{"refund lock time too near", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.LockTime = testTip + 23 })
		}, ErrRefundLockTooNear, paywire.CodeBadRefund},
		{"refund lock time as a timestamp", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.LockTime = 1_800_000_000 })
		}, ErrRefundLockTooNear, paywire.CodeBadRefund},
		{"refund lock time too far", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.LockTime = testTip + 1009 })
		}, ErrRefundLockTooFar, paywire.CodeBadRefund},
		{"refund paying back into the pool", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(f, r *wire.MsgTx, _ *paywire.RefundRequest) { r.TxOut[0].PkScript = f.TxOut[0].PkScript })
		}, ErrRefundPaysElsewhere, paywire.CodeBadRefund},
		{"refund paying a non-standard script", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.TxOut[0].PkScript = []byte{txscript.OP_TRUE} })
		}, ErrRefundPaysElsewhere, paywire.CodeBadRefund},
		{"refund spending another outpoint", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.TxIn[0].PreviousOutPoint.Index = 1 })
		}, ErrRefundOutpoint, paywire.CodeBadRefund},
		{"refund with two outputs", false, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, func(_, r *wire.MsgTx, _ *paywire.RefundRequest) { r.AddTxOut(wire.NewTxOut(1000, p2wpkh(other))) })
		}, ErrRefundShape, paywire.CodeBadRefund},
		{"payment lower than best", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, 4000, must(e.payee.Channel().SignPayment(key("payer channel"), 4000)))
		}, ErrPaymentNotAbove, paywire.CodePaymentTooLow},
		{"payment equal to best", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, 5000, must(e.payee.Channel().SignPayment(key("payer channel"), 5000)))
		}, ErrPaymentNotAbove, paywire.CodePaymentTooLow},
		{"payment above the pool", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, testCapacity+1, must(e.payee.Channel().SignPayment(key("payer channel"), testCapacity)))
		}, ErrPaymentAboveCapacity, paywire.CodePaymentTooHigh},
		{"payment overflowing int64", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, math.MaxInt64, must(e.payee.Channel().SignPayment(key("payer channel"), testCapacity)))
		}, ErrPaymentAboveCapacity, paywire.CodePaymentTooHigh},
		{"payment leaving dust change", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, testCapacity-100, signRaw(t, e.payee.Channel(), key("payer channel"), 100, PaymentSigHash))
		}, ErrDustChange, paywire.CodeDustChange},
		{"payment signed SIGHASH_ALL", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, 6000, signRaw(t, e.payee.Channel(), key("payer channel"), testCapacity-6000, txscript.SigHashAll))
		}, ErrBadSighash, paywire.CodeBadSighash},
		{"payment of everything signed SINGLE", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, testCapacity, signRaw(t, e.payee.Channel(), key("payer channel"), 0, PaymentSigHash))
		}, ErrBadSighash, paywire.CodeBadSighash},
		{"payment signed by the wrong key", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, 6000, must(e.payee.Channel().SignPayment(other, 6000)))
		}, ErrBadSignature, paywire.CodeBadSignature},
		{"payment signed for another amount", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, 7000, must(e.payee.Channel().SignPayment(key("payer channel"), 6000)))
		}, ErrBadSignature, paywire.CodeBadSignature},
		{"payment signature over another channel", true, func(t *testing.T, e *env) paywire.Message {
			o := newEnv(t)
			o.capacity = testCapacity - 1 // another funding transaction
			o.open()
			return payRaw(e, 6000, must(o.payee.Channel().SignPayment(key("payer channel"), 6000)))
		}, ErrBadSignature, paywire.CodeBadSignature},
		{"payment with a garbled signature", true, func(t *testing.T, e *env) paywire.Message {
			return payRaw(e, 6000, []byte{0x30, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, byte(PaymentSigHash)})
		}, ErrBadSignature, paywire.CodeBadSignature},
		{"payment for another channel id", true, func(t *testing.T, e *env) paywire.Message {
			m := payRaw(e, 6000, must(e.payee.Channel().SignPayment(key("payer channel"), 6000)))
			m.ChannelID = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0"
			return m
		}, ErrWrongChannel, paywire.CodeUnknownChannel},
		{"payment below the minimum step", true, func(t *testing.T, e *env) paywire.Message {
			e.payee.cfg.Terms.MinStepSat = 100
			return payRaw(e, 5050, must(e.payee.Channel().SignPayment(key("payer channel"), 5050)))
		}, ErrPaymentBelowMin, paywire.CodePaymentTooLow},
		{"payment in a version not negotiated", true, func(t *testing.T, e *env) paywire.Message {
			m := payRaw(e, 6000, must(e.payee.Channel().SignPayment(key("payer channel"), 6000)))
			m.V = 2
			return m
		}, ErrVersion, paywire.CodeUnsupportedVersion},
		{"message out of order", true, func(t *testing.T, e *env) paywire.Message {
			return refundRequest(t, e, nil)
		}, ErrUnexpected, paywire.CodeUnexpected},
	}
	for _, c := range payeeCases {
		t.Run("payee/"+c.name, func(t *testing.T) {
			e := newEnv(t)
			if c.open {
				e.open()
				if err := e.pay(5000); err != nil {
					t.Fatal(err)
				}
			} else if _, err := e.payee.Handle(&paywire.Hello{Header: paywire.Header{V: 1}, Versions: []int{1}}); err != nil {
				t.Fatal(err)
			}
			before := e.payee.Record()
			effs, err := e.payee.Handle(c.msg(t, e))
			checkRefusal(t, effs, err, c.want, c.code)
			if after := e.payee.Record(); after.BestSat != before.BestSat || string(after.BestSig) != string(before.BestSig) {
				t.Fatalf("best payment changed from %d to %d", before.BestSat, after.BestSat)
			}
		})
	}

	payerCases := []struct {
		name string
		run  func(t *testing.T, e *env) ([]Effect, error)
		want error
		code string
	}{
		{"payee key not on the curve", func(t *testing.T, e *env) ([]Effect, error) {
			e.payer.Start()
			m := testTerms().Wire(1)
			m.PayeeKey = append([]byte{3}, make([]byte, 32)...)
			return e.payer.Handle(m)
		}, ErrBadKey, paywire.CodeBadTerms},
		{"price above the caller's limit", func(t *testing.T, e *env) ([]Effect, error) {
			e.payer.cfg.MaxPriceSatPerMin = testPrice - 1
			e.payer.Start()
			return e.payer.Handle(testTerms().Wire(1))
		}, ErrBadTerms, paywire.CodeBadTerms},
		{"refund signed by the wrong key", func(t *testing.T, e *env) ([]Effect, error) {
			e.payer.Start()
			e.payer.Handle(testTerms().Wire(1))
			effs, err := e.payer.Fund(FundRequest{FundingTx: e.fundingTx(testCapacity), PayerScript: p2wpkh(e.payerWallet), RefundFee: testFeeRate})
			if err != nil {
				t.Fatal(err)
			}
			req := effs[0].(Send).Msg.(*paywire.RefundRequest)
			refund, _ := DecodeTx(req.RefundTx)
			sig, _ := e.payer.Channel().SignRefund(other, refund)
			return e.payer.Handle(&paywire.RefundSigned{Header: paywire.Header{V: 1}, ChannelID: e.payer.Channel().ID(), Sig: sig})
		}, ErrBadSignature, paywire.CodeBadSignature},
		{"ack of a value never sent", func(t *testing.T, e *env) ([]Effect, error) {
			e.open()
			e.payer.Pay(2000)
			return e.payer.Handle(&paywire.Ack{Header: paywire.Header{V: 1}, ChannelID: e.payer.Channel().ID(), PaidSat: 3000})
		}, ErrAckMismatch, paywire.CodeUnexpected},
		{"payee claiming more than was signed on resume", func(t *testing.T, e *env) ([]Effect, error) {
			e.open()
			e.pay(2000)
			p, _ := ResumePayer(testPayerConfig(), e.payer.Record())
			p.Start()
			terms := testTerms().Wire(1)
			terms.Challenge = testChallenge
			p.Handle(terms)
			ch := p.Channel()
			return p.Handle(&paywire.Open{Header: paywire.Header{V: 1}, ChannelID: ch.ID(), CapacitySat: ch.CapacitySat, PaidSat: 2001, ExpiryHeight: ch.ExpiryHeight})
		}, ErrPaymentAboveCapacity, paywire.CodeBadPayment},
	}
	for _, c := range payerCases {
		t.Run("payer/"+c.name, func(t *testing.T) {
			e := newEnv(t)
			effs, err := c.run(t, e)
			checkRefusal(t, effs, err, c.want, c.code)
			for _, ef := range effs {
				if _, ok := ef.(BroadcastFunding); ok {
					t.Fatal("funding broadcast after a refusal")
				}
			}
		})
	}
}

func checkRefusal(t *testing.T, effs []Effect, err error, want error, code string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("got %#v, want code %s", err, code)
	}
	if len(effs) != 1 {
		t.Fatalf("effects %#v", effs)
	}
	m, ok := effs[0].(Send).Msg.(*paywire.Error)
	if !ok || m.Code != code || m.Reason == "" {
		t.Fatalf("peer told %#v", effs[0])
	}
	if _, err := paywire.Encode(m); err != nil {
		t.Fatalf("error message does not encode: %v", err)
	}
}

func must(sig []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return sig
}

func payRaw(e *env, paid int64, sig []byte) *paywire.Pay {
	m := &paywire.Pay{ChannelID: e.payee.Channel().ID(), PaidSat: paid, Sig: sig}
	m.V = 1
	return m
}
