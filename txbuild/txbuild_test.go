package txbuild

import (
	"errors"
	"testing"

	"github.com/btcsuite/btcd/wire"
)

var (
	wpkh  = append([]byte{0, 20}, make([]byte, 20)...)
	wpkh2 = append([]byte{0, 20}, append([]byte{1}, make([]byte, 19)...)...)
)

func coin(i uint32, v int64) Coin {
	return Coin{Outpoint: wire.OutPoint{Index: i}, Value: v, PkScript: wpkh}
}

func TestFund(t *testing.T) {
	rate := FeeRate(1000)
	tx, fee, ci, err := Fund([]Coin{coin(0, 100_000)}, []*wire.TxOut{wire.NewTxOut(50_000, wpkh2)}, wpkh, rate)
	if err != nil {
		t.Fatal(err)
	}
	if ci != 1 || tx.TxOut[1].Value != 100_000-50_000-fee {
		t.Fatalf("change %d at %d, fee %d", tx.TxOut[ci].Value, ci, fee)
	}
	// 1 P2WPKH in, 2 P2WPKH out: 141 vB signed.
	if fee != 141 {
		t.Fatalf("fee %d, want 141 at 1 sat/vB", fee)
	}
	for _, in := range tx.TxIn {
		if in.Witness != nil {
			t.Fatal("unsigned transaction carries a witness")
		}
	}
	// Change that would be dust goes to the fee.
	tx, fee, ci, err = Fund([]Coin{coin(0, 50_000+110+200)}, []*wire.TxOut{wire.NewTxOut(50_000, wpkh2)}, wpkh, rate)
	if err != nil || ci != -1 || len(tx.TxOut) != 1 || fee != 310 {
		t.Fatalf("dust change: %v %d %d", err, ci, fee)
	}
	_, _, _, err = Fund([]Coin{coin(0, 50_000)}, []*wire.TxOut{wire.NewTxOut(50_000, wpkh2)}, wpkh, rate)
	var short *InsufficientFundsError
	if !errors.As(err, &short) || short.Have != 50_000 || short.Need != 50_110 {
		t.Fatalf("got %v", err)
	}
	_, _, _, err = Fund([]Coin{{Value: 1, PkScript: []byte{0x51}}}, nil, wpkh, rate)
	if !errors.Is(err, ErrNotSegwit) {
		t.Fatalf("non-segwit coin: %v", err)
	}
}

func TestSelect(t *testing.T) {
	coins := []Coin{coin(0, 10_000), coin(1, 80_000), coin(2, 30_000)}
	_, _, _, used, err := Select(coins, []*wire.TxOut{wire.NewTxOut(90_000, wpkh2)}, wpkh, 1000)
	if err != nil || len(used) != 2 || used[0].Value != 80_000 || used[1].Value != 30_000 {
		t.Fatalf("used %v, %v", used, err)
	}
	_, _, _, _, err = Select(coins, []*wire.TxOut{wire.NewTxOut(200_000, wpkh2)}, wpkh, 1000)
	var short *InsufficientFundsError
	if !errors.As(err, &short) || short.Have != 120_000 {
		t.Fatalf("got %v", err)
	}
	_, _, _, _, err = Select(nil, []*wire.TxOut{wire.NewTxOut(1, wpkh2)}, wpkh, 1000)
	if !errors.As(err, &short) || short.Have != 0 {
		t.Fatalf("no coins: %v", err)
	}
}

// TestFundNeverSignalsReplaceability: every input is final (BIP125): a
// payee may take a funding unconfirmed, and must not see it replaced.
func TestFundNeverSignalsReplaceability(t *testing.T) {
	coins := []Coin{
		{Outpoint: wire.OutPoint{Index: 1}, Value: 50_000, PkScript: append([]byte{0, 20}, make([]byte, 20)...)},
		{Outpoint: wire.OutPoint{Index: 2}, Value: 70_000, PkScript: append([]byte{0, 20}, make([]byte, 20)...)},
	}
	tx, _, _, err := Fund(coins, []*wire.TxOut{wire.NewTxOut(100_000, append([]byte{0, 32}, make([]byte, 32)...))}, append([]byte{0, 20}, make([]byte, 20)...), 2000)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range tx.TxIn {
		if in.Sequence != wire.MaxTxInSequenceNum {
			t.Fatalf("input %d sequence %#x", i, in.Sequence)
		}
	}
}
