// Package chain is paysip's view of the Bitcoin network: a small interface
// (tip height, fee estimate, broadcast, transaction status, spends of an
// outpoint, coins of scripts) that backends implement. chain/btcdrpc talks
// to a btcd node; others (Bitcoin Core, Electrum, Esplora) can follow.
package chain

import (
	"context"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/txbuild"
)

// Broadcast refusals a caller acts on, matched with errors.Is.
var (
	// ErrNonFinal: the transaction's lock time is not reached yet.
	ErrNonFinal = errors.New("transaction is not final yet")
	// ErrConflict: an input is already spent (in the chain or the mempool)
	// or unknown.
	ErrConflict = errors.New("transaction conflicts with a spent or unknown input")
	// ErrAlreadyKnown: the node already has this very transaction.
	ErrAlreadyKnown = errors.New("transaction already known")
	// ErrRejected: any other refusal (invalid signature, policy...).
	ErrRejected = errors.New("transaction rejected")
)

// TxStatus is what the node knows of a transaction.
type TxStatus struct {
	Known         bool
	Confirmations int64 // 0: in the mempool
}

// Utxo is an unspent output paying one of the asked scripts.
type Utxo struct {
	txbuild.Coin
	Confirmations int64 // 0: unconfirmed
	Coinbase      bool  // spendable only after the network's coinbase maturity
}

// Spend is a transaction spending an outpoint.
type Spend struct {
	TxID          chainhash.Hash
	Confirmations int64
	// Tx is the spending transaction when the backend has it (btcdrpc
	// always does); it tells a refund from a settlement by its shape.
	Tx *wire.MsgTx
}

// Chain is the access to the Bitcoin network paysip needs.
type Chain interface {
	// Params are the network's parameters.
	Params() *chaincfg.Params
	// TipHeight is the height of the best block.
	TipHeight(ctx context.Context) (int32, error)
	// FeeRate estimates the rate for confirmation within target blocks,
	// falling back to the backend's configured rate when the node has no
	// estimate (always so on regtest).
	FeeRate(ctx context.Context, target int) (txbuild.FeeRate, error)
	// Broadcast sends a transaction; refusals wrap the errors above.
	Broadcast(ctx context.Context, tx *wire.MsgTx) error
	// TxStatus reports a transaction's confirmations.
	TxStatus(ctx context.Context, txid chainhash.Hash) (TxStatus, error)
	// SpendOf returns the transaction spending op (whose output script is
	// pkScript), in the chain or the mempool, or nil if none is known.
	SpendOf(ctx context.Context, op wire.OutPoint, pkScript []byte) (*Spend, error)
	// Coins returns the unspent outputs, confirmed or not, paying scripts.
	Coins(ctx context.Context, scripts [][]byte) ([]Utxo, error)
	// Used reports, for each script, whether any transaction ever paid it.
	Used(ctx context.Context, scripts [][]byte) ([]bool, error)
}

// StatusBatcher is a Chain that answers many TxStatus questions in one
// request to its node: a payee watching a thousand unconfirmed fundings
// asks once per poll, not a thousand times.
type StatusBatcher interface {
	// TxStatuses returns the status of each txid, in order.
	TxStatuses(ctx context.Context, txids []chainhash.Hash) ([]TxStatus, error)
}

// TxStatuses asks c for the status of each txid: in one request when c is
// a StatusBatcher, else one by one.
func TxStatuses(ctx context.Context, c Chain, txids []chainhash.Hash) ([]TxStatus, error) {
	if b, ok := c.(StatusBatcher); ok {
		return b.TxStatuses(ctx, txids)
	}
	out := make([]TxStatus, len(txids))
	for i, id := range txids {
		st, err := c.TxStatus(ctx, id)
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// Networks by name; the network is a value, never an `if regtest`.
var networks = map[string]*chaincfg.Params{
	"mainnet": &chaincfg.MainNetParams,
	"testnet": &chaincfg.TestNet3Params,
	"signet":  &chaincfg.SigNetParams,
	"regtest": &chaincfg.RegressionNetParams,
}

// ParamsByName returns the parameters of mainnet, testnet, signet or regtest.
func ParamsByName(name string) (*chaincfg.Params, error) {
	if p, ok := networks[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unknown network %q (mainnet, testnet, signet, regtest)", name)
}

// IsRegtest reports whether params are regtest's, for the few things only
// regtest allows (the faucet).
func IsRegtest(p *chaincfg.Params) bool { return p.Net == chaincfg.RegressionNetParams.Net }

// ErrOffline is returned by an Offline chain for anything but Params.
var ErrOffline = errors.New("no chain connection")

// Offline is a Chain that knows only its network: enough to create a
// wallet and derive addresses before a node is up.
type Offline struct{ Net *chaincfg.Params }

var _ Chain = Offline{}

// Params implements Chain.
func (o Offline) Params() *chaincfg.Params { return o.Net }

// TipHeight implements Chain.
func (Offline) TipHeight(context.Context) (int32, error) { return 0, ErrOffline }

// FeeRate implements Chain.
func (Offline) FeeRate(context.Context, int) (txbuild.FeeRate, error) { return 0, ErrOffline }

// Broadcast implements Chain.
func (Offline) Broadcast(context.Context, *wire.MsgTx) error { return ErrOffline }

// TxStatus implements Chain.
func (Offline) TxStatus(context.Context, chainhash.Hash) (TxStatus, error) {
	return TxStatus{}, ErrOffline
}

// SpendOf implements Chain.
func (Offline) SpendOf(context.Context, wire.OutPoint, []byte) (*Spend, error) {
	return nil, ErrOffline
}

// Coins implements Chain.
func (Offline) Coins(context.Context, [][]byte) ([]Utxo, error) { return nil, ErrOffline }

// Used implements Chain.
func (Offline) Used(context.Context, [][]byte) ([]bool, error) { return nil, ErrOffline }
