// Package txbuild builds Bitcoin transactions from coins: fee rates, virtual
// sizes, dust, and funding a set of outputs from P2WPKH coins with change.
// It is pure: no keys, no chain access. Signing is the wallet's job.
package txbuild

import (
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/sat"
)

// TxVersion is the version of every transaction paysip builds.
const TxVersion = 2

// DustRelayFee is the relay fee rate (sat/kvB) that defines dust, as in
// btcd's and Bitcoin Core's default policy (mempool.DefaultMinRelayTxFee).
var DustRelayFee = btcutil.Amount(1000)

// IsDust reports whether an output of value to script would be dust, by the
// node's own rule (294 sat for P2WPKH, 330 for P2WSH). It is btcd's
// mempool.IsDust (policy.go), written out here so that the browser's
// build does not carry btcd's mempool, blockchain and mining packages;
// TestIsDustIsBtcds checks they agree. An output is dust when spending it
// costs more than a third of its value at the relay fee: its size plus a
// typical spending input (41 bytes of outpoint and sequence, and 107 bytes
// of signature and key, a quarter of that for a witness program, BIP141).
func IsDust(value int64, script []byte) bool {
	if txscript.IsUnspendable(script) {
		return true
	}
	out := wire.NewTxOut(value, script)
	size := out.SerializeSize() + 41
	if txscript.IsWitnessProgram(script) {
		size += 107 / 4 // blockchain.WitnessScaleFactor
	} else {
		size += 107
	}
	return value*1000/(3*int64(size)) < int64(DustRelayFee)
}

// FeeRate is a fee rate in satoshis per 1000 virtual bytes.
type FeeRate int64

// FeeFor returns the fee for a transaction of vsize virtual bytes, rounded up.
func (r FeeRate) FeeFor(vsize int64) (int64, error) {
	return sat.MulDivCeil(int64(r), vsize, 1000)
}

// VSize returns a transaction's virtual size (BIP141: weight / 4, rounded
// up; weight = 3 x stripped size + total size).
func VSize(tx *wire.MsgTx) int64 {
	weight := int64(tx.SerializeSizeStripped()*3 + tx.SerializeSize())
	return (weight + 3) / 4
}

// Coin is an unspent output that can fund a transaction.
type Coin struct {
	Outpoint wire.OutPoint
	Value    int64
	PkScript []byte // P2WPKH: segwit, so a txid is final before signing (BIP141)
}

// InsufficientFundsError says how much a transaction needed and how much
// its inputs had.
type InsufficientFundsError struct{ Have, Need int64 }

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds: have %d sat, need %d sat", e.Have, e.Need)
}

// ErrNotSegwit refuses a coin whose spend would leave the txid malleable.
var ErrNotSegwit = fmt.Errorf("coin is not P2WPKH")

// P2WPKH witness of the largest size: a 72-byte DER signature plus the
// sighash byte, and a compressed key.
var dummyP2WPKHWitness = wire.TxWitness{make([]byte, 73), make([]byte, 33)}

// Fund builds an unsigned transaction spending every coin to outputs, with
// a change output to changeScript appended when the change is above dust
// (otherwise it goes to the fee). The fee is computed for the signed size at
// rate. changeIndex is -1 when there is no change. Inputs are final
// (sequence 0xffffffff): the transaction does not signal replaceability
// (BIP125), because a payee may accept a channel funding before it
// confirms, and a funding its payer could replace would let the payer take
// back what it paid. A stuck transaction is bumped by a child (CPFP) on
// its change instead.
func Fund(coins []Coin, outputs []*wire.TxOut, changeScript []byte, rate FeeRate) (tx *wire.MsgTx, fee int64, changeIndex int, err error) {
	tx = wire.NewMsgTx(TxVersion)
	var in, out int64
	for _, c := range coins {
		if txscript.GetScriptClass(c.PkScript) != txscript.WitnessV0PubKeyHashTy {
			return nil, 0, 0, fmt.Errorf("%w: %v", ErrNotSegwit, c.Outpoint)
		}
		if in, err = sat.Add(in, c.Value); err != nil {
			return nil, 0, 0, err
		}
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: c.Outpoint, Sequence: wire.MaxTxInSequenceNum, Witness: dummyP2WPKHWitness})
	}
	for _, o := range outputs {
		if out, err = sat.Add(out, o.Value); err != nil {
			return nil, 0, 0, err
		}
		tx.AddTxOut(o)
	}
	feeNoChange, err := rate.FeeFor(VSize(tx))
	if err != nil {
		return nil, 0, 0, err
	}
	withChange := tx.Copy()
	withChange.AddTxOut(wire.NewTxOut(0, changeScript))
	feeChange, err := rate.FeeFor(VSize(withChange))
	if err != nil {
		return nil, 0, 0, err
	}
	need, err := sat.Add(out, feeNoChange)
	if err != nil {
		return nil, 0, 0, err
	}
	if in < need {
		return nil, 0, 0, &InsufficientFundsError{Have: in, Need: need}
	}
	fee, changeIndex = in-out, -1
	if change := in - out - feeChange; change > 0 && !IsDust(change, changeScript) {
		tx = withChange
		changeIndex = len(tx.TxOut) - 1
		tx.TxOut[changeIndex].Value = change
		fee = feeChange
	}
	for _, txIn := range tx.TxIn {
		txIn.Witness = nil
	}
	return tx, fee, changeIndex, nil
}

// Select picks coins, largest first, until Fund succeeds for outputs, and
// returns the transaction. It returns an *InsufficientFundsError with the
// total of all coins when they are not enough.
func Select(coins []Coin, outputs []*wire.TxOut, changeScript []byte, rate FeeRate) (tx *wire.MsgTx, fee int64, changeIndex int, used []Coin, err error) {
	sorted := append([]Coin(nil), coins...)
	// Largest first: fewer inputs, lower fees.
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j].Value > sorted[j-1].Value; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for n := 1; n <= len(sorted); n++ {
		tx, fee, changeIndex, err = Fund(sorted[:n], copyOuts(outputs), changeScript, rate)
		if err == nil {
			return tx, fee, changeIndex, sorted[:n], nil
		}
		if _, short := err.(*InsufficientFundsError); !short {
			return nil, 0, 0, nil, err
		}
	}
	if err == nil { // no coins at all
		_, _, _, err = Fund(nil, copyOuts(outputs), changeScript, rate)
	}
	return nil, 0, 0, nil, err
}

func copyOuts(outs []*wire.TxOut) []*wire.TxOut {
	c := make([]*wire.TxOut, len(outs))
	for i, o := range outs {
		c[i] = wire.NewTxOut(o.Value, o.PkScript)
	}
	return c
}
