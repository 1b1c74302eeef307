package channel

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sat"
	"github.com/paysip/paysip/sigcheck"
	"github.com/paysip/paysip/txbuild"
)

// Transaction shapes. Every transaction is version 2.
const (
	txVersion = txbuild.TxVersion
	// RefundSequence makes the refund's input non-final so that its
	// nLockTime binds (a lock time is ignored when every input has sequence
	// 0xffffffff). Bit 31 is set, so BIP68 relative locks stay off.
	RefundSequence = wire.MaxTxInSequenceNum - 1
	// PaymentSequence is the funding input's sequence in payment and
	// settlement transactions: final, as the payer signs it.
	PaymentSequence = wire.MaxTxInSequenceNum
	// lockTimeThreshold: below it nLockTime is a block height (BIP65).
	lockTimeThreshold = txscript.LockTimeThreshold

	// PaymentSigHash is the payer's sighash on a payment that leaves it
	// change: it signs the funding input and its own change output only,
	// so the payee can add its output, its fee and its own inputs
	// (bitcoinj's scheme).
	PaymentSigHash = txscript.SigHashSingle | txscript.SigHashAnyOneCanPay
	// PaymentSigHashAll is the payer's sighash when the payee takes the
	// whole pool: no output is signed.
	PaymentSigHashAll = txscript.SigHashNone | txscript.SigHashAnyOneCanPay
)

// IsDust reports whether an output would be dust (txbuild.IsDust).
func IsDust(value int64, script []byte) bool { return txbuild.IsDust(value, script) }

// Channel is what both sides know of an open pool once the funding
// transaction is fixed. It is a plain value: the state machines build it,
// and storage can save and restore it.
type Channel struct {
	Outpoint      wire.OutPoint
	CapacitySat   int64
	PayerKey      *btcec.PublicKey
	PayeeKey      *btcec.PublicKey
	ExpiryHeight  uint32 // refund lock time (block height)
	PayerScript   []byte // where the refund and the payer's change go
	WitnessScript []byte // 2-of-2, derived from the keys
	PkScript      []byte // P2WSH of WitnessScript

	// payerVerifier checks payment signatures against PayerKey from a
	// table of the key's multiples (package sigcheck, 35,840 bytes), built
	// at the first verification: the payee checks every payment of the
	// channel against the same key. It is rebuilt if PayerKey is ever
	// replaced by another key, so it never answers for a stale key.
	payerVerifier atomic.Pointer[sigcheck.KeyVerifier]
}

// NewChannel derives the scripts of a channel and checks its values.
func NewChannel(op wire.OutPoint, capacity int64, payer, payee *btcec.PublicKey, expiry uint32, payerScript []byte) (*Channel, error) {
	if err := sat.Check(capacity); err != nil || capacity == 0 {
		return nil, fmt.Errorf("%w: capacity %d", ErrAmount, capacity)
	}
	ws, err := MultisigScript(payer, payee)
	if err != nil {
		return nil, err
	}
	return &Channel{
		Outpoint: op, CapacitySat: capacity, PayerKey: payer, PayeeKey: payee,
		ExpiryHeight: expiry, PayerScript: payerScript, WitnessScript: ws, PkScript: P2WSH(ws),
	}, nil
}

// ID is the channel's name on the wire: the funding outpoint "txid:vout".
func (c *Channel) ID() string { return c.Outpoint.String() }

func (c *Channel) fetcher() txscript.PrevOutputFetcher {
	return txscript.NewCannedPrevOutputFetcher(c.PkScript, c.CapacitySat)
}

// sigHash computes the BIP143 signature hash of input 0 (the funding input)
// of tx for the given type.
func (c *Channel) sigHash(tx *wire.MsgTx, ht txscript.SigHashType) ([]byte, error) {
	return txscript.CalcWitnessSigHash(c.WitnessScript, txscript.NewTxSigHashes(tx, c.fetcher()), ht, tx, 0, c.CapacitySat)
}

// PaymentTx returns the transaction a payer signs when the payee is owed
// paid in total: the funding input (sequence final) and, unless the payee
// takes everything, output 0 paying the payer's change. With
// SIGHASH_SINGLE|ANYONECANPAY that pair is all the signature commits to
// (BIP143: hashPrevouts and hashSequence zero, hashOutputs of output 0 only),
// plus version and lock time (0).
func (c *Channel) PaymentTx(paid int64) (*wire.MsgTx, txscript.SigHashType, error) {
	change, err := sat.Sub(c.CapacitySat, paid)
	if err != nil || paid <= 0 {
		return nil, 0, fmt.Errorf("%w: paying %d of a %d pool", ErrPaymentAboveCapacity, paid, c.CapacitySat)
	}
	tx := wire.NewMsgTx(txVersion)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: c.Outpoint, Sequence: PaymentSequence})
	if change == 0 {
		return tx, PaymentSigHashAll, nil
	}
	if IsDust(change, c.PayerScript) {
		return nil, 0, fmt.Errorf("%w: %d sat left to the payer", ErrDustChange, change)
	}
	tx.AddTxOut(wire.NewTxOut(change, c.PayerScript))
	return tx, PaymentSigHash, nil
}

// SignPayment is the payer's step: the signature giving the payee paid.
func (c *Channel) SignPayment(key *btcec.PrivateKey, paid int64) ([]byte, error) {
	tx, ht, err := c.PaymentTx(paid)
	if err != nil {
		return nil, err
	}
	h, err := c.sigHash(tx, ht)
	if err != nil {
		return nil, err
	}
	return sign(key, h, ht), nil
}

// VerifyPayment is the payee's check of a payment signature: it rebuilds
// the payment transaction for paid and verifies sig against its BIP143
// sighash and the payer's key, with the exact sighash type required.
func (c *Channel) VerifyPayment(paid int64, sig []byte) error {
	tx, ht, err := c.PaymentTx(paid)
	if err != nil {
		return err
	}
	h, err := c.sigHash(tx, ht)
	if err != nil {
		return err
	}
	s, err := parseSig(sig, ht)
	if err != nil {
		return err
	}
	if !c.verifier().Verify(s, h) {
		return errNotVerified
	}
	return nil
}

// verifier returns the payer key's verifier, building it on first use or
// when PayerKey no longer is the key it was built for. Concurrent first
// calls may each build one; either is correct.
func (c *Channel) verifier() *sigcheck.KeyVerifier {
	v := c.payerVerifier.Load()
	if v == nil || !v.For(c.PayerKey) {
		v = sigcheck.New(c.PayerKey)
		c.payerVerifier.Store(v)
	}
	return v
}

// RefundTx builds the unsigned refund: the pool back to the payer, less
// fee, locked until the expiry height (nLockTime) with a non-final input.
func (c *Channel) RefundTx(fee int64) (*wire.MsgTx, error) {
	value, err := sat.Sub(c.CapacitySat, fee)
	if err != nil {
		return nil, fmt.Errorf("%w: refund fee %d above capacity %d", ErrAmount, fee, c.CapacitySat)
	}
	if IsDust(value, c.PayerScript) {
		return nil, fmt.Errorf("%w: refund of %d sat would be dust", ErrAmount, value)
	}
	tx := wire.NewMsgTx(txVersion)
	tx.LockTime = c.ExpiryHeight
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: c.Outpoint, Sequence: RefundSequence})
	tx.AddTxOut(wire.NewTxOut(value, c.PayerScript))
	return tx, nil
}

// refundSigHash is the SIGHASH_ALL hash of the refund, which both sign.
func (c *Channel) refundSigHash(refund *wire.MsgTx) ([]byte, error) {
	return c.sigHash(refund, txscript.SigHashAll)
}

// SignRefund returns key's SIGHASH_ALL signature of the refund.
func (c *Channel) SignRefund(key *btcec.PrivateKey, refund *wire.MsgTx) ([]byte, error) {
	h, err := c.refundSigHash(refund)
	if err != nil {
		return nil, err
	}
	return sign(key, h, txscript.SigHashAll), nil
}

// CompleteRefund returns a copy of the refund with its witness: the
// payer's and the payee's SIGHASH_ALL signatures and the script.
func (c *Channel) CompleteRefund(refund *wire.MsgTx, payerSig, payeeSig []byte) *wire.MsgTx {
	tx := refund.Copy()
	tx.TxIn[0].Witness = multisigWitness(c.WitnessScript, c.PayerKey, payerSig, payeeSig)
	return tx
}

// checkRefund is the payee's check of a refund it is asked to sign
// (bitcoinj's version 1 refund rules): one input spending exactly the
// funding outpoint with a non-final sequence; one output paying the pool
// back to a standard script that is not the pool's own; a height lock time
// inside [minExpiry, maxExpiry].
func checkRefund(tx *wire.MsgTx, funding wire.OutPoint, fundingPkScript []byte, minExpiry, maxExpiry uint32) *ProtocolError {
	if len(tx.TxIn) != 1 || len(tx.TxOut) != 1 {
		return perr(paywire.CodeBadRefund, ErrRefundShape, "%d inputs, %d outputs", len(tx.TxIn), len(tx.TxOut))
	}
	if tx.TxIn[0].PreviousOutPoint != funding {
		return perr(paywire.CodeBadRefund, ErrRefundOutpoint, "spends %v, funding is %v", tx.TxIn[0].PreviousOutPoint, funding)
	}
	if tx.TxIn[0].Sequence == wire.MaxTxInSequenceNum {
		return perr(paywire.CodeBadRefund, ErrRefundFinal, "sequence 0x%08x", tx.TxIn[0].Sequence)
	}
	if len(tx.TxIn[0].SignatureScript) != 0 || len(tx.TxIn[0].Witness) != 0 {
		return perr(paywire.CodeBadRefund, ErrRefundShape, "refund input must be unsigned")
	}
	lt := tx.LockTime
	if lt >= lockTimeThreshold || lt < minExpiry {
		return perr(paywire.CodeBadRefund, ErrRefundLockTooNear, "lock time %d, window [%d, %d]", lt, minExpiry, maxExpiry).expect(int64(minExpiry))
	}
	if lt > maxExpiry {
		return perr(paywire.CodeBadRefund, ErrRefundLockTooFar, "lock time %d, window [%d, %d]", lt, minExpiry, maxExpiry).expect(int64(maxExpiry))
	}
	out := tx.TxOut[0]
	if bytes.Equal(out.PkScript, fundingPkScript) || !standardPayout(out.PkScript) {
		return perr(paywire.CodeBadRefund, ErrRefundPaysElsewhere, "output script %x", out.PkScript)
	}
	return nil
}

// standardPayout reports whether script is a standard single-owner output:
// the payer's change in every payment goes to the refund's script, so a
// non-standard one would make the payee's settlements unrelayable.
func standardPayout(script []byte) bool {
	switch txscript.GetScriptClass(script) {
	case txscript.WitnessV0PubKeyHashTy, txscript.WitnessV0ScriptHashTy, txscript.WitnessV1TaprootTy,
		txscript.PubKeyHashTy, txscript.ScriptHashTy:
		return true
	}
	return false
}

// BuildFunding builds the unsigned funding transaction: every coin as an
// input, output 0 paying capacity to the pool of the two keys, and change
// to changeScript when it is not dust. Coins must be P2WPKH so the txid
// cannot change when the inputs are signed (BIP141), which lets the payee
// sign the refund before the funding is signed or broadcast.
func BuildFunding(coins []txbuild.Coin, payer, payee *btcec.PublicKey, capacity int64, changeScript []byte, rate txbuild.FeeRate) (tx *wire.MsgTx, fee int64, err error) {
	ws, err := MultisigScript(payer, payee)
	if err != nil {
		return nil, 0, err
	}
	if err := sat.Check(capacity); err != nil || capacity == 0 {
		return nil, 0, fmt.Errorf("%w: capacity %d", ErrAmount, capacity)
	}
	tx, fee, _, err = txbuild.Fund(coins, []*wire.TxOut{wire.NewTxOut(capacity, P2WSH(ws))}, changeScript, rate)
	return tx, fee, err
}

// fundingOutput finds the pool's output in a funding transaction.
func fundingOutput(tx *wire.MsgTx, vout uint32, pkScript []byte) (int64, error) {
	if int(vout) >= len(tx.TxOut) {
		return 0, fmt.Errorf("%w: no output %d", ErrFundingScript, vout)
	}
	out := tx.TxOut[vout]
	if !bytes.Equal(out.PkScript, pkScript) {
		return 0, fmt.Errorf("%w: output %d pays %x", ErrFundingScript, vout, out.PkScript)
	}
	// One pool per funding: with two outputs paying the same 2-of-2, the
	// two sides could disagree on which one the channel is.
	for i, o := range tx.TxOut {
		if i != int(vout) && bytes.Equal(o.PkScript, pkScript) {
			return 0, fmt.Errorf("%w: outputs %d and %d both pay the pool", ErrFundingScript, vout, i)
		}
	}
	if err := sat.Check(out.Value); err != nil || out.Value == 0 {
		return 0, fmt.Errorf("%w: output value %d", ErrAmount, out.Value)
	}
	return out.Value, nil
}

// fullySignedSegwit reports whether every input of tx carries a witness and
// no signature script, so that tx's id is the one computed before signing.
func fullySignedSegwit(tx *wire.MsgTx) bool {
	if len(tx.TxIn) == 0 {
		return false
	}
	for _, in := range tx.TxIn {
		if len(in.SignatureScript) != 0 || len(in.Witness) == 0 {
			return false
		}
	}
	return true
}

// stripWitness returns tx without witness data: same txid, but unusable
// for broadcast until signed again.
func stripWitness(tx *wire.MsgTx) *wire.MsgTx {
	c := tx.Copy()
	for _, in := range c.TxIn {
		in.Witness = nil
	}
	return c
}

func serialize(tx *wire.MsgTx) []byte {
	var b bytes.Buffer
	_ = tx.Serialize(&b)
	return b.Bytes()
}

func serializeNoWitness(tx *wire.MsgTx) []byte {
	var b bytes.Buffer
	_ = tx.SerializeNoWitness(&b)
	return b.Bytes()
}

// DecodeTx parses a serialized transaction (with or without witness) and
// refuses trailing bytes.
func DecodeTx(b []byte) (*wire.MsgTx, error) {
	tx := new(wire.MsgTx)
	r := bytes.NewReader(b)
	if err := tx.Deserialize(r); err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d trailing bytes", r.Len())
	}
	return tx, nil
}

// TxID returns the id of tx.
func TxID(tx *wire.MsgTx) chainhash.Hash { return tx.TxHash() }

// dummySig is the largest DER signature plus its sighash byte, for sizing.
var dummySig = make([]byte, 73)

// RefundFee returns the fee of the signed refund at rate.
func (c *Channel) RefundFee(rate txbuild.FeeRate) (int64, error) {
	tx, err := c.RefundTx(0)
	if err != nil {
		return 0, err
	}
	tx.TxIn[0].Witness = multisigWitness(c.WitnessScript, c.PayerKey, dummySig, dummySig)
	return rate.FeeFor(txbuild.VSize(tx))
}

// Settlement describes how the payee cashes its best payment (the seed's
// step 6): its payout output and fee, and optionally inputs and outputs of
// its own (to raise the fee). The payee signs with SIGHASH_ALL, so extra
// inputs are signed by the payee's wallet after SettlementTx.
type Settlement struct {
	PayoutScript []byte
	FeeSat       int64 // taken from the payee's share
	ExtraInputs  []*wire.TxIn
	ExtraOutputs []*wire.TxOut
}

// SettlementTx builds the payee's final transaction from the best payment:
// input 0 the funding (with the payer's signature for paid and the
// payee's), output 0 the payer's change as signed (if any), then the payee's
// payout of paid minus fee, then any extras.
func (c *Channel) SettlementTx(key *btcec.PrivateKey, paid int64, payerSig []byte, s Settlement) (*wire.MsgTx, error) {
	tx, _, err := c.PaymentTx(paid)
	if err != nil {
		return nil, err
	}
	payout, err := sat.Sub(paid, s.FeeSat)
	if err != nil {
		return nil, fmt.Errorf("%w: fee %d above the %d paid", ErrSettlementDust, s.FeeSat, paid)
	}
	if IsDust(payout, s.PayoutScript) {
		return nil, fmt.Errorf("%w: %d sat", ErrSettlementDust, payout)
	}
	tx.AddTxOut(wire.NewTxOut(payout, s.PayoutScript))
	for _, in := range s.ExtraInputs {
		tx.AddTxIn(in)
	}
	for _, out := range s.ExtraOutputs {
		tx.AddTxOut(out)
	}
	h, err := c.sigHash(tx, txscript.SigHashAll)
	if err != nil {
		return nil, err
	}
	tx.TxIn[0].Witness = multisigWitness(c.WitnessScript, c.PayeeKey, sign(key, h, txscript.SigHashAll), payerSig)
	return tx, nil
}

// SettlementFee returns the fee at rate of a settlement of paid to
// payoutScript with no extra inputs or outputs.
func (c *Channel) SettlementFee(paid int64, payoutScript []byte, rate txbuild.FeeRate) (int64, error) {
	tx, _, err := c.PaymentTx(paid)
	if err != nil {
		return 0, err
	}
	tx.AddTxOut(wire.NewTxOut(paid, payoutScript))
	tx.TxIn[0].Witness = multisigWitness(c.WitnessScript, c.PayerKey, dummySig, dummySig)
	return rate.FeeFor(txbuild.VSize(tx))
}

// MinPaymentFor is the smallest first payment worth accepting when
// settlements pay payoutScript at rate: a settlement's fee (with the
// payer's change output, sized for a P2WSH change script, the largest
// standard single-owner segwit v0 output) plus the smallest non-dust payout.
// A smaller payment could never be cashed: the payee would serve a call for
// a state it cannot settle. A payee derives its terms' MinPaymentSat from
// this at the fee rate of the moment (with headroom for a fee rise).
func MinPaymentFor(payoutScript []byte, rate txbuild.FeeRate) (int64, error) {
	// Sizes only: any two valid keys and a 34-byte change script.
	a, b := dummyKey(1), dummyKey(2)
	change := append([]byte{txscript.OP_0, 32}, make([]byte, 32)...)
	c, err := NewChannel(wire.OutPoint{}, sat.MaxMoney, a, b, 1, change)
	if err != nil {
		return 0, err
	}
	fee, err := c.SettlementFee(1, payoutScript, rate)
	if err != nil {
		return 0, err
	}
	// Smallest payout above dust for this script.
	lo, hi := int64(0), int64(1_000_000)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if IsDust(mid, payoutScript) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return sat.Add(fee, lo)
}

func dummyKey(n byte) *btcec.PublicKey {
	var b [32]byte
	b[31] = n
	k, _ := btcec.PrivKeyFromBytes(b[:])
	return k.PubKey()
}
