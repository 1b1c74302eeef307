package crashtest

import (
	"context"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/internal/regtest"
)

func tx(t *testing.T, env *regtest.Env, txid string) *wire.MsgTx {
	t.Helper()
	h, err := chainhash.NewHashFromStr(txid)
	if err != nil {
		t.Fatalf("txid %q: %v", txid, err)
	}
	m, err := env.Chain.Tx(context.Background(), *h)
	if err != nil {
		t.Fatalf("tx %s: %v", txid, err)
	}
	return m
}

// fee is a transaction's inputs less its outputs, read from the node.
func fee(t *testing.T, env *regtest.Env, txid string) int64 {
	m := tx(t, env, txid)
	var f int64
	for _, in := range m.TxIn {
		f += tx(t, env, in.PreviousOutPoint.Hash.String()).TxOut[in.PreviousOutPoint.Index].Value
	}
	for _, o := range m.TxOut {
		f -= o.Value
	}
	return f
}
