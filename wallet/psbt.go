package wallet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/txbuild"
)

// Funding from another wallet (BIP174 PSBT), as lnd does it: paysip
// exports a PSBT with the pool output only; the other wallet adds inputs and
// change and signs; paysip imports the signed PSBT, checks that the pool
// output is intact and every input is segwit, and extracts the funding
// transaction. Nothing is broadcast until the refund is signed and stored.

// ErrPSBT is returned (wrapped) for a PSBT that cannot fund the channel.
var ErrPSBT = errors.New("unusable funding PSBT")

// ExportFundingPSBT returns, base64-encoded, an unsigned PSBT with one
// output paying capacity to poolScript and no inputs.
func ExportFundingPSBT(poolScript []byte, capacity int64) (string, error) {
	p, err := psbt.New(nil, []*wire.TxOut{wire.NewTxOut(capacity, poolScript)}, txbuild.TxVersion, 0, nil)
	if err != nil {
		return "", err
	}
	return p.B64Encode()
}

// ImportFundingPSBT finalizes a signed PSBT and returns its transaction and
// the index of the output paying capacity to poolScript.
func ImportFundingPSBT(b64 string, poolScript []byte, capacity int64) (*wire.MsgTx, uint32, error) {
	p, err := psbt.NewFromRawBytes(strings.NewReader(strings.TrimSpace(b64)), true)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrPSBT, err)
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		return nil, 0, fmt.Errorf("%w: not fully signed: %v", ErrPSBT, err)
	}
	tx, err := psbt.Extract(p)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrPSBT, err)
	}
	vout := -1
	for i, out := range tx.TxOut {
		if bytes.Equal(out.PkScript, poolScript) && out.Value == capacity {
			vout = i
		}
	}
	if vout < 0 {
		return nil, 0, fmt.Errorf("%w: no output of %d sat to the pool", ErrPSBT, capacity)
	}
	for i, in := range tx.TxIn {
		if len(in.SignatureScript) != 0 || len(in.Witness) == 0 {
			return nil, 0, fmt.Errorf("%w: input %d is not segwit: the funding txid could change", ErrPSBT, i)
		}
	}
	return tx, uint32(vout), nil
}

// FundPSBT plays the other wallet's part: it adds inputs and change to a
// PSBT's outputs, and records each input's previous output (witness UTXO).
func (w *Wallet) FundPSBT(ctx context.Context, b64 string, rate txbuild.FeeRate) (string, error) {
	p, err := psbt.NewFromRawBytes(strings.NewReader(b64), true)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPSBT, err)
	}
	coins, err := w.Coins(ctx, 1)
	if err != nil {
		return "", err
	}
	plain := make([]txbuild.Coin, len(coins))
	for i, c := range coins {
		plain[i] = c.Coin
	}
	change, err := w.changeScript()
	if err != nil {
		return "", err
	}
	tx, _, _, used, err := txbuild.Select(plain, p.UnsignedTx.TxOut, change, rate)
	if err != nil {
		return "", err
	}
	np, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		return "", err
	}
	u, err := psbt.NewUpdater(np)
	if err != nil {
		return "", err
	}
	for i, c := range used {
		if err := u.AddInWitnessUtxo(wire.NewTxOut(c.Value, c.PkScript), i); err != nil {
			return "", err
		}
	}
	return np.B64Encode()
}

// SignPSBT signs the PSBT's inputs that spend the wallet's coins.
func (w *Wallet) SignPSBT(b64 string) (string, error) {
	p, err := psbt.NewFromRawBytes(strings.NewReader(b64), true)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrPSBT, err)
	}
	prev := map[wire.OutPoint]*wire.TxOut{}
	for i, in := range p.Inputs {
		if in.WitnessUtxo == nil {
			return "", fmt.Errorf("%w: input %d has no witness UTXO", ErrPSBT, i)
		}
		prev[p.UnsignedTx.TxIn[i].PreviousOutPoint] = in.WitnessUtxo
	}
	fetch := txscript.NewMultiPrevOutFetcher(prev)
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, fetch)
	u, err := psbt.NewUpdater(p)
	if err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, in := range p.Inputs {
		key := w.keys[string(in.WitnessUtxo.PkScript)]
		if key == nil {
			continue // not ours
		}
		sig, err := txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, in.WitnessUtxo.Value, in.WitnessUtxo.PkScript, txscript.SigHashAll, key)
		if err != nil {
			return "", err
		}
		if _, err := u.Sign(i, sig, key.PubKey().SerializeCompressed(), nil, nil); err != nil {
			return "", err
		}
	}
	return p.B64Encode()
}
