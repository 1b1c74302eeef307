// Package regtest is the test harness for code that needs a real Bitcoin
// node: each Env starts its own btcd on regtest in a temporary directory,
// with a faucet wallet receiving the mined coins, and stops it when the
// test ends.
package regtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

// FeeRate is the rate the tests pay: 2 sat/vB.
const FeeRate = txbuild.FeeRate(2000)

// Env is a running regtest node with a funded faucet.
type Env struct {
	T      testing.TB
	Dir    string
	Node   *btcnode.Node
	Chain  *btcdrpc.Client
	Faucet *wallet.Wallet
}

// New starts a node for the test; it is stopped by t.Cleanup.
func New(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	params := &chaincfg.RegressionNetParams
	fw, _, err := wallet.Create(filepath.Join(dir, "faucet.json"), chain.Offline{Net: params}, "")
	if err != nil {
		t.Fatal(err)
	}
	mining, err := fw.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	node, err := btcnode.StartRegtest(ctx, btcnode.Config{DataDir: filepath.Join(dir, "btcd"), MiningAddr: mining})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Stop() })
	c, err := btcdrpc.New(btcdrpc.Config{Host: node.RPCAddr, User: node.RPCUser, Pass: node.RPCPass, Params: params})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	faucet, err := wallet.Open(filepath.Join(dir, "faucet.json"), c, "")
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Dir: dir, Node: node, Chain: c, Faucet: faucet}
}

// Mine mines n blocks.
func (e *Env) Mine(n uint32) []*chainhash.Hash {
	e.T.Helper()
	h, err := e.Node.Generate(n)
	if err != nil {
		e.T.Fatal(err)
	}
	return h
}

// Fund sends amount from the faucet to addr and confirms it in a block.
func (e *Env) Fund(addr btcutil.Address, amount int64) *wire.MsgTx {
	e.T.Helper()
	tx, err := e.Faucet.Send(context.Background(), addr, amount, FeeRate)
	if err != nil {
		e.T.Fatalf("faucet: %v", err)
	}
	e.Mine(1)
	return tx
}

// NewWallet creates a wallet in the test's directory.
func (e *Env) NewWallet(name, passphrase string) (*wallet.Wallet, string) {
	e.T.Helper()
	w, mnemonic, err := wallet.Create(filepath.Join(e.Dir, name+".json"), e.Chain, passphrase)
	if err != nil {
		e.T.Fatal(err)
	}
	return w, mnemonic
}

// Confirmed returns a wallet's confirmed balance.
func (e *Env) Confirmed(w *wallet.Wallet) int64 {
	e.T.Helper()
	b, err := w.Balance(context.Background())
	if err != nil {
		e.T.Fatal(err)
	}
	return b.Confirmed
}
