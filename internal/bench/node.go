package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

// feeRate is what the bench's own transactions pay: 2 sat/vB.
const feeRate = txbuild.FeeRate(2000)

// node is the bench's regtest btcd, its RPC client and the faucet wallet
// that receives the mined coins.
type node struct {
	btcd   *btcnode.Node
	chain  *btcdrpc.Client
	faucet *wallet.Wallet
}

// startNode starts btcd on regtest in dir (blocks are mined on demand).
func startNode(ctx context.Context, dir string, log *slog.Logger) (*node, error) {
	params := &chaincfg.RegressionNetParams
	path := filepath.Join(dir, "faucet.json")
	fw, _, err := wallet.OpenOrCreate(path, chain.Offline{Net: params}, "")
	if err != nil {
		return nil, err
	}
	mining, err := fw.NewAddress()
	if err != nil {
		return nil, err
	}
	n := &node{}
	if n.btcd, err = btcnode.StartRegtest(ctx, btcnode.Config{DataDir: filepath.Join(dir, "btcd"), MiningAddr: mining, Log: log}); err != nil {
		return nil, err
	}
	if n.chain, err = btcdrpc.New(btcdrpc.Config{Host: n.btcd.RPCAddr, User: n.btcd.RPCUser, Pass: n.btcd.RPCPass, Params: params}); err != nil {
		n.close()
		return nil, err
	}
	if n.faucet, err = wallet.Open(path, n.chain, ""); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

func (n *node) close() {
	if n.chain != nil {
		n.chain.Close()
	}
	if n.btcd != nil {
		n.btcd.Stop()
	}
}

func (n *node) mine(blocks uint32) error {
	_, err := n.btcd.Generate(blocks)
	return err
}

// coins pays count outputs of value each from the faucet to script, in
// transactions of at most 400 outputs (under the standard size), each
// confirmed before the next is built, and returns them as coins.
func (n *node) coins(ctx context.Context, script []byte, count int, value int64) ([]txbuild.Coin, error) {
	var out []txbuild.Coin
	change, err := n.faucet.NewScript()
	if err != nil {
		return nil, err
	}
	for len(out) < count {
		k := min(400, count-len(out))
		outputs := make([]*wire.TxOut, k)
		for i := range outputs {
			outputs[i] = wire.NewTxOut(value, script)
		}
		have, err := n.faucet.SpendableCoins(ctx)
		if err != nil {
			return nil, err
		}
		tx, _, _, used, err := txbuild.Select(have, outputs, change, feeRate)
		if err != nil {
			return nil, fmt.Errorf("faucet: %w", err)
		}
		if err := n.faucet.Sign(tx, used); err != nil {
			return nil, err
		}
		if err := n.chain.Broadcast(ctx, tx); err != nil {
			return nil, fmt.Errorf("faucet: %w", err)
		}
		if err := n.mine(1); err != nil {
			return nil, err
		}
		h := tx.TxHash()
		for i, o := range tx.TxOut {
			if o.Value == value && string(o.PkScript) == string(script) {
				out = append(out, txbuild.Coin{Outpoint: wire.OutPoint{Hash: h, Index: uint32(i)}, Value: value, PkScript: script})
			}
		}
	}
	return out[:count], nil
}
