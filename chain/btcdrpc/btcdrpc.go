// Package btcdrpc implements chain.Chain over a btcd node's JSON-RPC
// interface. The node must run with --txindex and --addrindex (the
// wallet's coins are found through searchrawtransactions); paysip's own
// regtest node does.
package btcdrpc

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/txbuild"
)

// Config locates a btcd node.
type Config struct {
	Host     string // host:port
	User     string
	Pass     string
	CertFile string // TLS certificate of the RPC server; empty for plain HTTP (--notls, loopback only)
	Params   *chaincfg.Params
	// FallbackFee is used when the node has no fee estimate (a fresh
	// node, a quiet network). On regtest, where there is never an
	// estimate, zero means 2 sat/vB. On any other network zero means no
	// fallback: FeeRate refuses (ErrNoFeeEstimate) rather than guess a
	// rate that may leave a settlement or a refund stuck.
	FallbackFee txbuild.FeeRate
	// Log receives the use of the fallback; nil discards it.
	Log *slog.Logger
}

// ErrNoFeeEstimate: the node cannot estimate a fee and no fallback rate
// is configured.
var ErrNoFeeEstimate = errors.New("the node has no fee estimate and no fallback fee rate is configured")

// Client is a chain.Chain backed by btcd.
type Client struct {
	rpc      *jsonRPC
	params   *chaincfg.Params
	fallback txbuild.FeeRate
	log      *slog.Logger
}

var _ chain.Chain = (*Client)(nil)

// New makes a client of a btcd node (nothing is sent until the first
// call). Every call is a JSON-RPC request over HTTP (HTTPS with
// CertFile), bound to the caller's context.
func New(cfg Config) (*Client, error) {
	var pem []byte
	if cfg.CertFile != "" {
		var err error
		if pem, err = os.ReadFile(cfg.CertFile); err != nil {
			return nil, fmt.Errorf("reading RPC certificate: %w", err)
		}
	}
	rpc, err := newJSONRPC(cfg.Host, cfg.User, cfg.Pass, pem)
	if err != nil {
		return nil, err
	}
	fb := cfg.FallbackFee
	if fb == 0 && cfg.Params != nil && chain.IsRegtest(cfg.Params) {
		fb = 2000
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{rpc: rpc, params: cfg.Params, fallback: fb, log: log.With("component", "btcdrpc")}, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.rpc.http.CloseIdleConnections() }

// Params implements chain.Chain.
func (c *Client) Params() *chaincfg.Params { return c.params }

// TipHeight implements chain.Chain.
func (c *Client) TipHeight(ctx context.Context) (int32, error) {
	var h int32
	err := c.rpc.callOne(ctx, "getblockcount", []any{}, &h)
	return h, err
}

// FeeRate implements chain.Chain. btcd's estimatefee answers in BTC/kB as
// a JSON number; it is converted to integer satoshis here, at the edge.
// Without an estimate it uses the configured fallback, saying so off
// regtest, or refuses with ErrNoFeeEstimate when none is configured.
func (c *Client) FeeRate(ctx context.Context, target int) (txbuild.FeeRate, error) {
	var est float64
	err := c.rpc.callOne(ctx, "estimatefee", []any{target}, &est)
	if err == nil && est > 0 {
		if amt, err := btcutil.NewAmount(est); err == nil && amt > 0 {
			return txbuild.FeeRate(amt), nil
		}
	}
	if c.fallback == 0 {
		return 0, fmt.Errorf("%w (target %d blocks): set a fallback rate", ErrNoFeeEstimate, target)
	}
	if c.params == nil || !chain.IsRegtest(c.params) {
		c.log.Warn("no fee estimate from the node: using the configured fallback rate", "sat_per_kvb", int64(c.fallback), "target_blocks", target, "estimate_err", err)
	}
	return c.fallback, nil
}

// Broadcast implements chain.Chain.
func (c *Client) Broadcast(ctx context.Context, tx *wire.MsgTx) error {
	var buf bytes.Buffer
	buf.Grow(tx.SerializeSize())
	if err := tx.Serialize(&buf); err != nil {
		return err
	}
	err := c.rpc.callOne(ctx, "sendrawtransaction", []any{hex.EncodeToString(buf.Bytes()), false}, nil)
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "not finalized"), strings.Contains(msg, "non-final"):
		return fmt.Errorf("%w: %v", chain.ErrNonFinal, err)
	case strings.Contains(msg, "already have transaction"), strings.Contains(msg, "already exists"):
		return fmt.Errorf("%w: %v", chain.ErrAlreadyKnown, err)
	case strings.Contains(msg, "already spent"), strings.Contains(msg, "orphan transaction"),
		strings.Contains(msg, "missing inputs"), strings.Contains(msg, "double spend"):
		return fmt.Errorf("%w: %v", chain.ErrConflict, err)
	}
	return fmt.Errorf("%w: %v", chain.ErrRejected, err)
}

func isNoTx(err error) bool {
	var re *btcjson.RPCError
	return errors.As(err, &re) && (re.Code == btcjson.ErrRPCNoTxInfo || re.Code == btcjson.ErrRPCInvalidAddressOrKey)
}

// TxStatus implements chain.Chain.
func (c *Client) TxStatus(ctx context.Context, txid chainhash.Hash) (chain.TxStatus, error) {
	var r batchReply
	err := c.rpc.callOne(ctx, "getrawtransaction", []any{txid.String(), 1}, &r.Result)
	var re *btcjson.RPCError
	switch {
	case errors.As(err, &re):
		r.Error = re
	case err != nil:
		return chain.TxStatus{}, err
	}
	return txStatusOf(r)
}

// history lists the transactions touching a script's address, mempool
// included (btcd's address index).
func (c *Client) history(ctx context.Context, script []byte) ([]*btcjson.SearchRawTransactionsResult, error) {
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(script, c.params)
	if err != nil || len(addrs) != 1 {
		return nil, fmt.Errorf("script %x has no single address", script)
	}
	var all []*btcjson.SearchRawTransactionsResult
	const page = 1000
	for skip := 0; ; skip += page {
		// searchrawtransactions address verbose skip count vinextra reverse
		var rs []*btcjson.SearchRawTransactionsResult
		err := c.rpc.callOne(ctx, "searchrawtransactions", []any{addrs[0].EncodeAddress(), 1, skip, page, 1, false}, &rs)
		if err != nil {
			if isNoTx(err) || strings.Contains(err.Error(), "No information available") {
				return all, nil
			}
			return nil, err
		}
		all = append(all, rs...)
		if len(rs) < page {
			return all, nil
		}
	}
}

// SpendOf implements chain.Chain: it looks for a spender in the history of
// the outpoint's script (chain and mempool). gettxout is no help here: for
// an output of a mempool transaction it answers "unspent" even when
// another mempool transaction spends it. An outpoint whose transaction the
// node does not know (yet, or any more) has no spender either.
func (c *Client) SpendOf(ctx context.Context, op wire.OutPoint, pkScript []byte) (*chain.Spend, error) {
	txs, err := c.history(ctx, pkScript)
	if err != nil {
		return nil, err
	}
	want := op.Hash.String()
	for _, tx := range txs {
		for _, in := range tx.Vin {
			if in.Txid == want && in.Vout == op.Index {
				h, err := chainhash.NewHashFromStr(tx.Txid)
				if err != nil {
					return nil, err
				}
				sp := &chain.Spend{TxID: *h, Confirmations: int64(tx.Confirmations)}
				if raw, err := hex.DecodeString(tx.Hex); err == nil {
					var m wire.MsgTx
					if m.Deserialize(bytes.NewReader(raw)) == nil && m.TxHash() == *h {
						sp.Tx = &m
					}
				}
				return sp, nil
			}
		}
	}
	return nil, nil
}

// Coins implements chain.Chain. An output is unspent when no transaction
// in its script's history (chain and mempool: btcd's address index covers
// both, inputs included) spends it. gettxout is not used for this: it does
// not see spends still in the mempool.
func (c *Client) Coins(ctx context.Context, scripts [][]byte) ([]chain.Utxo, error) {
	var outs []chain.Utxo
	spent := map[wire.OutPoint]bool{}
	seen := map[wire.OutPoint]bool{}
	for _, script := range scripts {
		txs, err := c.history(ctx, script)
		if err != nil {
			return nil, err
		}
		hexScript := hex.EncodeToString(script)
		for _, tx := range txs {
			coinbase := false
			for _, in := range tx.Vin {
				if in.Coinbase != "" {
					coinbase = true
					continue
				}
				h, err := chainhash.NewHashFromStr(in.Txid)
				if err != nil {
					return nil, err
				}
				spent[wire.OutPoint{Hash: *h, Index: in.Vout}] = true
			}
			h, err := chainhash.NewHashFromStr(tx.Txid)
			if err != nil {
				return nil, err
			}
			var msg *wire.MsgTx
			for _, v := range tx.Vout {
				op := wire.OutPoint{Hash: *h, Index: v.N}
				if v.ScriptPubKey.Hex != hexScript || seen[op] {
					continue
				}
				seen[op] = true
				// Values come from the raw transaction, in satoshis; the
				// RPC's JSON numbers are BTC floats.
				if msg == nil {
					if msg, err = decodeHex(tx.Hex); err != nil {
						return nil, err
					}
				}
				if int(v.N) >= len(msg.TxOut) {
					return nil, fmt.Errorf("transaction %s has no output %d", tx.Txid, v.N)
				}
				outs = append(outs, chain.Utxo{
					Coin:          txbuild.Coin{Outpoint: op, Value: msg.TxOut[v.N].Value, PkScript: bytes.Clone(script)},
					Confirmations: int64(tx.Confirmations),
					Coinbase:      coinbase,
				})
			}
		}
	}
	coins := outs[:0]
	for _, u := range outs {
		if !spent[u.Outpoint] {
			coins = append(coins, u)
		}
	}
	return coins, nil
}

func decodeHex(s string) (*wire.MsgTx, error) {
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	msg := new(wire.MsgTx)
	if err := msg.Deserialize(bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	return msg, nil
}

// Used implements chain.Chain.
func (c *Client) Used(ctx context.Context, scripts [][]byte) ([]bool, error) {
	used := make([]bool, len(scripts))
	for i, s := range scripts {
		txs, err := c.history(ctx, s)
		if err != nil {
			return nil, err
		}
		used[i] = len(txs) > 0
	}
	return used, nil
}

// Tx fetches a transaction by id (from the mempool or, with --txindex, the
// chain).
func (c *Client) Tx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	var h string
	if err := c.rpc.callOne(ctx, "getrawtransaction", []any{txid.String(), 0}, &h); err != nil {
		return nil, err
	}
	tx, err := decodeHex(h)
	if err != nil {
		return nil, err
	}
	if tx.TxHash() != txid {
		return nil, fmt.Errorf("the node answered another transaction than %s", txid)
	}
	return tx, nil
}

// Generate mines blocks to the node's --miningaddr (regtest only).
func (c *Client) Generate(ctx context.Context, n uint32) error {
	if !chain.IsRegtest(c.params) {
		return fmt.Errorf("mining is for regtest only; this node is on %s", c.params.Name)
	}
	return c.rpc.callOne(ctx, "generate", []any{n}, nil)
}
