package channel

import (
	"errors"
	"math"
	"testing"

	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
)

// TestChannelOnScriptEngine opens a channel and checks every transaction
// the package produces in btcd's script engine: the funding against its
// coin, the refund, a settlement of each payment, and the lock-time rule on
// the refund.
func TestChannelOnScriptEngine(t *testing.T) {
	e := newEnv(t)
	e.open()

	// Funding: broadcast only after the refund was stored (run checks it),
	// and its input executes against the coin.
	if len(e.broadcast) != 1 {
		t.Fatalf("%d broadcasts", len(e.broadcast))
	}
	funding := e.broadcast[0]
	if err := execute(funding, 0, map[wire.OutPoint]*wire.TxOut{e.coin.Outpoint: e.coinTx.TxOut[0]}); err != nil {
		t.Fatalf("funding does not execute: %v", err)
	}
	if got := e.payee.Channel().ID(); got != funding.TxHash().String()+":0" {
		t.Fatalf("channel id %s", got)
	}

	// Refund: complete, executes, and is non-final until the expiry height.
	refund := e.payer.RefundTx()
	if err := execute(refund, 0, e.fundingPrev()); err != nil {
		t.Fatalf("refund does not execute: %v", err)
	}
	if refund.TxIn[0].Sequence != 0xfffffffe || refund.LockTime != testTip+24 {
		t.Fatalf("refund sequence %x lock time %d", refund.TxIn[0].Sequence, refund.LockTime)
	}
	if isFinal(refund, int32(refund.LockTime)-1) {
		t.Fatal("refund final one block before expiry")
	}
	if !isFinal(refund, int32(refund.LockTime)) {
		t.Fatal("refund not final at expiry")
	}
	// With a final sequence the lock would not bind: the same transaction
	// would be final at once. This is the 2014 hack's bug.
	unlocked := refund.Copy()
	unlocked.TxIn[0].Sequence = wire.MaxTxInSequenceNum
	if !isFinal(unlocked, testTip) {
		t.Fatal("expected a final-sequence refund to ignore its lock time")
	}

	// Each payment, settled by the payee, executes.
	for _, paid := range []int64{1000, 2000, 61_000, testCapacity - 1000} {
		if err := e.pay(paid); err != nil {
			t.Fatalf("pay %d: %v", paid, err)
		}
		tx, err := e.settle()
		if err != nil {
			t.Fatalf("settle %d: %v", paid, err)
		}
		if err := execute(tx, 0, e.fundingPrev()); err != nil {
			t.Fatalf("settlement of %d does not execute: %v", paid, err)
		}
		if tx.TxOut[0].Value != testCapacity-paid || string(tx.TxOut[0].PkScript) != string(p2wpkh(e.payerWallet)) {
			t.Fatalf("payer change %d", tx.TxOut[0].Value)
		}
	}
	// The last payment takes the whole pool: SIGHASH_NONE|ANYONECANPAY.
	if err := e.pay(testCapacity); err != nil {
		t.Fatal(err)
	}
	if ht := e.payeeStore.BestSig[len(e.payeeStore.BestSig)-1]; ht != byte(PaymentSigHashAll) {
		t.Fatalf("sighash 0x%x for a payment of everything", ht)
	}
	tx, err := e.settle()
	if err != nil {
		t.Fatal(err)
	}
	if len(tx.TxOut) != 1 {
		t.Fatalf("%d outputs when the payee takes all", len(tx.TxOut))
	}
	if err := execute(tx, 0, e.fundingPrev()); err != nil {
		t.Fatalf("full settlement does not execute: %v", err)
	}
}

// TestSettlementWithPayeeInput: the payee adds an input of its own to pay a
// higher fee; the payer's SINGLE|ANYONECANPAY signature still holds.
func TestSettlementWithPayeeInput(t *testing.T) {
	e := newEnv(t)
	e.open()
	if err := e.pay(50_000); err != nil {
		t.Fatal(err)
	}
	wallet := key("payee wallet")
	extra := wire.OutPoint{Index: 3}
	extraOut := wire.NewTxOut(20_000, p2wpkh(wallet))
	tx, err := e.payee.Settlement(Settlement{
		PayoutScript: p2wpkh(wallet), FeeSat: 0,
		ExtraInputs:  []*wire.TxIn{{PreviousOutPoint: extra, Sequence: wire.MaxTxInSequenceNum}},
		ExtraOutputs: []*wire.TxOut{wire.NewTxOut(15_000, p2wpkh(wallet))},
	})
	if err != nil {
		t.Fatal(err)
	}
	prev := e.fundingPrev()
	prev[extra] = extraOut
	fetch := txscript.NewMultiPrevOutFetcher(prev)
	w, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetch), 1, extraOut.Value, extraOut.PkScript, txscript.SigHashAll, wallet, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[1].Witness = w
	for i := range tx.TxIn {
		if err := execute(tx, i, prev); err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
	}
}

// TestHourLongCall drives a whole call of 3,600 one-second payments; the
// payee's best is exactly price x seconds / 60, in integer satoshis.
func TestHourLongCall(t *testing.T) {
	e := newEnv(t)
	e.open()
	for s := int64(1); s <= 3600; s++ {
		owed, err := Owed(testPrice, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.pay(owed); err != nil {
			t.Fatalf("second %d: %v", s, err)
		}
	}
	const want = testPrice * 3600 / 60
	if e.payee.BestSat() != want || e.acked != want || e.payeeStore.BestSat != want {
		t.Fatalf("payee holds %d, acked %d, stored %d; want %d", e.payee.BestSat(), e.acked, e.payeeStore.BestSat, want)
	}
	if err := e.by("payer")(e.payer.Close("hangup")); err != nil {
		t.Fatal(err)
	}
	if e.closed == nil || e.closed.PaidSat != want || e.closed.SettlementTxID == "" {
		t.Fatalf("closed: %+v", e.closed)
	}
	if e.payer.State() != PayerClosed || e.payee.State() != PayeeClosed {
		t.Fatalf("states %v %v", e.payer.State(), e.payee.State())
	}
	settlement := e.broadcast[len(e.broadcast)-1]
	if err := execute(settlement, 0, e.fundingPrev()); err != nil {
		t.Fatal(err)
	}
	fee, _ := e.payee.Channel().SettlementFee(want, testTerms().PayoutScript, testFeeRate)
	if settlement.TxOut[1].Value != want-fee || settlement.TxOut[0].Value != testCapacity-want {
		t.Fatalf("settlement outputs %d / %d", settlement.TxOut[0].Value, settlement.TxOut[1].Value)
	}
}

// TestResume: a payer comes back in a later session, names its channel and
// goes on paying from the same pool, with no new funding.
func TestResume(t *testing.T) {
	e := newEnv(t)
	e.open()
	for _, v := range []int64{1000, 2000, 3000} {
		if err := e.pay(v); err != nil {
			t.Fatal(err)
		}
	}
	// The payment of 4000 reaches the payee and is stored, but the session
	// dies before the payer sees the ack.
	effs, err := e.payer.Pay(4000)
	if err != nil {
		t.Fatal(err)
	}
	e.payerStore[4000] = effs[0].(PersistPayment).Sig
	if _, err := e.payee.Handle(e.wire(effs[1].(Send).Msg)); err != nil {
		t.Fatal(err)
	}
	e.payeeStore.BestSat, e.payeeStore.BestSig = 4000, e.payee.Record().BestSig

	rec := e.payer.Record()
	if rec.SignedSat != 4000 || rec.AckedSat != 3000 {
		t.Fatalf("payer record signed %d acked %d", rec.SignedSat, rec.AckedSat)
	}
	broadcasts := len(e.broadcast)

	// A new session on both sides.
	e.payer, err = ResumePayer(testPayerConfig(), rec)
	if err != nil {
		t.Fatal(err)
	}
	e.payee, _ = NewPayee(testPayeeConfig())
	e.opened = false
	e.open()
	if e.payer.AckedSat() != 4000 {
		t.Fatalf("after resume the payer counts %d acknowledged, payee holds 4000", e.payer.AckedSat())
	}
	if err := e.pay(5000); err != nil {
		t.Fatal(err)
	}
	if e.payee.BestSat() != 5000 || len(e.broadcast) != broadcasts {
		t.Fatalf("best %d, %d new broadcasts", e.payee.BestSat(), len(e.broadcast)-broadcasts)
	}
	tx, err := e.settle()
	if err != nil {
		t.Fatal(err)
	}
	if err := execute(tx, 0, e.fundingPrev()); err != nil {
		t.Fatal(err)
	}
}

// TestResumeRefused: a payee asked to resume a channel it does not know
// says so with a code.
func TestResumeRefused(t *testing.T) {
	e := newEnv(t)
	effs, err := e.payee.Handle(&paywire.Hello{Header: paywire.Header{V: 1}, Versions: []int{1}, Resume: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0"})
	if err != nil || len(effs) != 1 {
		t.Fatal(effs, err)
	}
	effs, err = e.payee.RefuseResume("unknown channel")
	if !errors.Is(err, ErrResume) || effs[0].(Send).Msg.(*paywire.Error).Code != paywire.CodeUnknownChannel {
		t.Fatalf("%v %+v", err, effs)
	}
}

// TestVersionNegotiation: a payer speaking only a future version is told
// which version the payee speaks.
func TestVersionNegotiation(t *testing.T) {
	e := newEnv(t)
	effs, err := e.payee.Handle(&paywire.Hello{Header: paywire.Header{V: 1}, Versions: []int{2, 3}})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("err %v", err)
	}
	m := effs[0].(Send).Msg.(*paywire.Error)
	if m.Code != paywire.CodeUnsupportedVersion || m.Expected == nil || *m.Expected != 1 {
		t.Fatalf("%+v", m)
	}
	// A payer that also speaks 1 gets terms in version 1.
	e2 := newEnv(t)
	effs, err = e2.payee.Handle(&paywire.Hello{Header: paywire.Header{V: 1}, Versions: []int{1, 2}})
	if err != nil || effs[0].(Send).Msg.(*paywire.Terms).V != 1 {
		t.Fatal(effs, err)
	}
}

// TestPayerRules: the payer refuses to sign what the payee would refuse.
func TestPayerRules(t *testing.T) {
	e := newEnv(t)
	e.open()
	cases := []struct {
		paid int64
		err  error
	}{
		{999, ErrPaymentBelowMin},
		{math.MaxInt64, ErrAmount},
		{-1, ErrAmount},
		{testCapacity + 1, ErrPaymentAboveCapacity},
		{testCapacity - 100, ErrDustChange},
	}
	for _, c := range cases {
		if _, err := e.payer.Pay(c.paid); !errors.Is(err, c.err) {
			t.Errorf("Pay(%d) = %v, want %v", c.paid, err, c.err)
		}
	}
	if err := e.pay(2000); err != nil {
		t.Fatal(err)
	}
	if _, err := e.payer.Pay(2000); !errors.Is(err, ErrPaymentNotAbove) {
		t.Errorf("Pay of the same value: %v", err)
	}
	if got := e.payer.MaxPayable(); got != testCapacity-294 {
		t.Errorf("MaxPayable = %d, want capacity - 294 (P2WPKH dust limit)", got)
	}
	if _, err := e.payer.Pay(e.payer.MaxPayable()); err != nil {
		t.Errorf("Pay(MaxPayable): %v", err)
	}
}

func TestOwed(t *testing.T) {
	for _, c := range []struct{ price, s, want int64 }{{60000, 1, 1000}, {60000, 3600, 3_600_000}, {1, 1, 1}, {90, 1, 2}, {90, 2, 3}} {
		if got, err := Owed(c.price, c.s); err != nil || got != c.want {
			t.Errorf("Owed(%d, %d) = %d, %v; want %d", c.price, c.s, got, err, c.want)
		}
	}
	if _, err := Owed(math.MaxInt64, math.MaxInt64); err == nil {
		t.Error("Owed overflow accepted")
	}
}
