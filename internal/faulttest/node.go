package faulttest

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

// Node is a real regtest btcd (internal/regtest) that a test can stop and
// start again mid-call. btcd comes back on new ports with a new password
// (and an empty mempool: btcnode replays only the blocks), so everyone
// reaches it through Chain, which follows the node across restarts; while
// the node is down, Chain's calls fail at once with ErrNodeDown, as the
// real client's (chain/btcdrpc) do on a refused connection.
type Node struct {
	t     testing.TB
	Env   *regtest.Env
	Chain *Chain
	// Restarts counts the restarts so far.
	Restarts int

	mu     sync.Mutex
	mining btcutil.Address
	down   bool
}

// NewNode starts a node for t.
func NewNode(t testing.TB) *Node {
	t.Helper()
	env := regtest.New(t)
	mining, err := env.Faucet.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{t: t, Env: env, mining: mining}
	n.Chain = &Chain{params: &chaincfg.RegressionNetParams, c: env.Chain}
	// The faucet too must follow the node.
	if env.Faucet, err = wallet.Open(filepath.Join(env.Dir, "faucet.json"), n.Chain, ""); err != nil {
		t.Fatal(err)
	}
	return n
}

// Stop stops the node (SIGINT, as btcnode does): from now on Chain's calls
// fail until Start.
func (n *Node) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		return
	}
	n.Chain.setDown(true)
	n.Env.Node.Stop()
	n.down = true
}

// Start starts the node again on its data directory (the same chain) and
// points Chain at it.
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.down {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node, err := btcnode.StartRegtest(ctx, btcnode.Config{DataDir: filepath.Join(n.Env.Dir, "btcd"), MiningAddr: n.mining})
	if err != nil {
		n.t.Fatalf("restarting btcd: %v", err)
	}
	n.t.Cleanup(func() { node.Stop() })
	c, err := btcdrpc.New(btcdrpc.Config{Host: node.RPCAddr, User: node.RPCUser, Pass: node.RPCPass, Params: &chaincfg.RegressionNetParams})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(c.Close)
	n.Env.Node, n.Env.Chain = node, c
	n.Chain.set(c)
	n.Chain.setDown(false)
	n.down = false
	n.Restarts++
}

// Restart stops the node, waits down, and starts it again.
func (n *Node) Restart(down time.Duration) {
	n.t.Helper()
	n.Stop()
	time.Sleep(down)
	n.Start()
}

// Mine mines blocks (the node must be up).
func (n *Node) Mine(blocks uint32) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.Env.Node.Generate(blocks); err != nil {
		n.t.Fatalf("mining: %v", err)
	}
}

// Tip is the chain's height.
func (n *Node) Tip() uint32 {
	n.t.Helper()
	h, err := n.Chain.TipHeight(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return uint32(h)
}

// Tx reads a transaction from the node.
func (n *Node) Tx(txid chainhash.Hash) (*wire.MsgTx, error) {
	n.mu.Lock()
	c := n.Env.Chain
	n.mu.Unlock()
	return c.Tx(context.Background(), txid)
}

// Chain is a chain.Chain that follows a Node across restarts. Calls made
// while the node is down reach the stopped node's address and fail there.
type Chain struct {
	params *chaincfg.Params
	mu     sync.RWMutex
	c      chain.Chain
	down   bool
}

// ErrNodeDown is what Chain's calls return while the node is stopped.
var ErrNodeDown = errors.New("faulttest: bitcoin node down (connection refused)")

func (c *Chain) setDown(d bool) {
	c.mu.Lock()
	c.down = d
	c.mu.Unlock()
}

var _ chain.Chain = (*Chain)(nil)

func (c *Chain) set(n chain.Chain) {
	c.mu.Lock()
	c.c = n
	c.mu.Unlock()
}

func (c *Chain) cur() (chain.Chain, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.down {
		return nil, ErrNodeDown
	}
	return c.c, nil
}

// Params implements chain.Chain.
func (c *Chain) Params() *chaincfg.Params { return c.params }

// TipHeight implements chain.Chain.
func (c *Chain) TipHeight(ctx context.Context) (int32, error) {
	n, err := c.cur()
	if err != nil {
		return 0, err
	}
	return n.TipHeight(ctx)
}

// FeeRate implements chain.Chain.
func (c *Chain) FeeRate(ctx context.Context, target int) (txbuild.FeeRate, error) {
	n, err := c.cur()
	if err != nil {
		return 0, err
	}
	return n.FeeRate(ctx, target)
}

// Broadcast implements chain.Chain.
func (c *Chain) Broadcast(ctx context.Context, tx *wire.MsgTx) error {
	n, err := c.cur()
	if err != nil {
		return err
	}
	return n.Broadcast(ctx, tx)
}

// TxStatus implements chain.Chain.
func (c *Chain) TxStatus(ctx context.Context, txid chainhash.Hash) (chain.TxStatus, error) {
	n, err := c.cur()
	if err != nil {
		return chain.TxStatus{}, err
	}
	return n.TxStatus(ctx, txid)
}

// SpendOf implements chain.Chain.
func (c *Chain) SpendOf(ctx context.Context, op wire.OutPoint, pkScript []byte) (*chain.Spend, error) {
	n, err := c.cur()
	if err != nil {
		return nil, err
	}
	return n.SpendOf(ctx, op, pkScript)
}

// Coins implements chain.Chain.
func (c *Chain) Coins(ctx context.Context, scripts [][]byte) ([]chain.Utxo, error) {
	n, err := c.cur()
	if err != nil {
		return nil, err
	}
	return n.Coins(ctx, scripts)
}

// Used implements chain.Chain.
func (c *Chain) Used(ctx context.Context, scripts [][]byte) ([]bool, error) {
	n, err := c.cur()
	if err != nil {
		return nil, err
	}
	return n.Used(ctx, scripts)
}
