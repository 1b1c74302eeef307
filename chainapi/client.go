package chainapi

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/txbuild"
)

// RoundTrip carries one request body to sip:bitcoin@DOMAIN (a SIP MESSAGE
// with Content-Type application/vnd.paysip+json) and returns the body of
// the final answer: the 200's, and also a refusal's when it carries a
// chainapi error body (so its code reaches the caller). A refusal without
// such a body (408, a 503 rate limit, no route) is an error. The browser
// build sends it through SIP.js; Go programs through sipua.
type RoundTrip func(ctx context.Context, body []byte) ([]byte, error)

// Client is a chain.Chain over the SIP API: the browser's only way to the
// Bitcoin network. It knows no sockets; its RoundTrip does.
//
// It trusts its server for the chain's state (as a light wallet trusts its
// server): it checks that every answer is well formed and answers what was
// asked (the scripts, the outpoint, the txid, transactions whose hash is
// the txid), but not that the node tells the truth.
type Client struct {
	params *chaincfg.Params
	rt     RoundTrip
	seq    atomic.Uint64
	// MaxFeeRate caps a fee estimate the server gives (default
	// DefaultMaxFeeRate): a lying server cannot make the wallet burn its
	// coins in fees.
	MaxFeeRate txbuild.FeeRate
}

// DefaultMaxFeeRate is 1,000 sat/vB, far above any fee market seen.
const DefaultMaxFeeRate = txbuild.FeeRate(1_000_000)

var _ chain.Chain = (*Client)(nil)

// NewClient makes a client for network params over rt.
func NewClient(params *chaincfg.Params, rt RoundTrip) *Client {
	return &Client{params: params, rt: rt}
}

// APIError is a refusal from the server: its code (bad_request,
// rate_limit, unavailable, non_final, conflict, rejected, limit,
// no_faucet, too_many, not_found, unsupported) and reason.
type APIError struct {
	Code, Reason string
}

func (e *APIError) Error() string { return "bitcoin API: " + e.Code + ": " + e.Reason }

// ErrUnreachable wraps every failed round trip: no answer from
// sip:bitcoin@ (no route, a timeout, a refusal without an API body).
var ErrUnreachable = errors.New("bitcoin API unreachable")

// ErrBadAnswer wraps every answer that does not answer the request.
var ErrBadAnswer = errors.New("bitcoin API: bad answer")

// RateLimitRetries is how many times a request refused for the API's
// rate (code rate_limit) is sent again, a second apart (not a faucet
// request: the faucet's own limit is minutes).
const RateLimitRetries = 3

// call sends r and returns the checked answer of r's type, trying again a
// rate-limited request.
func (c *Client) call(ctx context.Context, r *Request) (*Response, error) {
	for try := 0; ; try++ {
		resp, err := c.callOnce(ctx, r)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != "rate_limit" || r.Type == TypeFaucet || try == RateLimitRetries {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// callOnce sends r once.
func (c *Client) callOnce(ctx context.Context, r *Request) (*Response, error) {
	r.V = 1
	r.ID = strconv.FormatUint(c.seq.Add(1), 10)
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	ans, err := c.rt(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, r.Type, err)
	}
	resp, err := DecodeResponse(ans)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if resp.Type == TypeError {
		return nil, &APIError{Code: resp.Code, Reason: resp.Reason}
	}
	if resp.Type != r.Type || resp.ID != r.ID {
		return nil, fmt.Errorf("%w: %s %q answers %s %q", ErrBadAnswer, resp.Type, resp.ID, r.Type, r.ID)
	}
	return resp, nil
}

// Params implements chain.Chain.
func (c *Client) Params() *chaincfg.Params { return c.params }

// TipHeight implements chain.Chain.
func (c *Client) TipHeight(ctx context.Context) (int32, error) {
	r, err := c.call(ctx, &Request{Type: TypeTip})
	if err != nil {
		return 0, err
	}
	return r.Height, nil
}

// FeeRate implements chain.Chain; the server falls back to its configured
// rate when its node has no estimate.
func (c *Client) FeeRate(ctx context.Context, target int) (txbuild.FeeRate, error) {
	r, err := c.call(ctx, &Request{Type: TypeFee, Target: min(max(target, 0), 1008)})
	if err != nil {
		return 0, err
	}
	maxRate := c.MaxFeeRate
	if maxRate == 0 {
		maxRate = DefaultMaxFeeRate
	}
	if r.FeeRate <= 0 || txbuild.FeeRate(r.FeeRate) > maxRate {
		return 0, fmt.Errorf("%w: fee rate %d sat/kvB outside 1..%d", ErrBadAnswer, r.FeeRate, maxRate)
	}
	return txbuild.FeeRate(r.FeeRate), nil
}

// Broadcast implements chain.Chain; refusals wrap chain's errors by the
// server's code.
func (c *Client) Broadcast(ctx context.Context, tx *wire.MsgTx) error {
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		return err
	}
	r, err := c.call(ctx, &Request{Type: TypeBroadcast, Tx: hex.EncodeToString(b.Bytes())})
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case "non_final":
			return fmt.Errorf("%w: %s", chain.ErrNonFinal, ae.Reason)
		case "conflict":
			return fmt.Errorf("%w: %s", chain.ErrConflict, ae.Reason)
		case "rejected":
			return fmt.Errorf("%w: %s", chain.ErrRejected, ae.Reason)
		}
	}
	if err != nil {
		return err
	}
	if r.TxID != tx.TxHash().String() {
		return fmt.Errorf("%w: broadcast answered txid %s for %s", ErrBadAnswer, r.TxID, tx.TxHash())
	}
	return nil
}

// TxStatus implements chain.Chain.
func (c *Client) TxStatus(ctx context.Context, txid chainhash.Hash) (chain.TxStatus, error) {
	r, err := c.call(ctx, &Request{Type: TypeTxStatus, TxID: txid.String()})
	if err != nil {
		return chain.TxStatus{}, err
	}
	if r.Known == nil || r.Confirmations == nil || r.TxID != txid.String() {
		return chain.TxStatus{}, fmt.Errorf("%w: tx_status without known, confirmations or its txid", ErrBadAnswer)
	}
	return chain.TxStatus{Known: *r.Known, Confirmations: *r.Confirmations}, nil
}

// Tx reads a transaction the node has (the wallet reads back its own
// unconfirmed change through this).
func (c *Client) Tx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	r, err := c.call(ctx, &Request{Type: TypeTx, TxID: txid.String()})
	if err != nil {
		return nil, err
	}
	tx, err := decodeTx(r.Tx)
	if err != nil || tx.TxHash() != txid {
		return nil, fmt.Errorf("%w: tx answer is not transaction %s", ErrBadAnswer, txid)
	}
	return tx, nil
}

// SpendOf implements chain.Chain.
func (c *Client) SpendOf(ctx context.Context, op wire.OutPoint, pkScript []byte) (*chain.Spend, error) {
	r, err := c.call(ctx, &Request{Type: TypeSpendOf, Outpoint: op.String(), Script: hex.EncodeToString(pkScript)})
	if err != nil {
		return nil, err
	}
	if r.Spend == nil {
		return nil, nil
	}
	h, err := chainhash.NewHashFromStr(r.Spend.TxID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	sp := &chain.Spend{TxID: *h, Confirmations: r.Spend.Confirmations}
	if r.Spend.Tx != "" {
		tx, err := decodeTx(r.Spend.Tx)
		if err != nil || tx.TxHash() != *h || !spends(tx, op) {
			return nil, fmt.Errorf("%w: spend_of answered a transaction that is not %s or does not spend %s", ErrBadAnswer, h, op)
		}
		sp.Tx = tx
	}
	return sp, nil
}

func spends(tx *wire.MsgTx, op wire.OutPoint) bool {
	for _, in := range tx.TxIn {
		if in.PreviousOutPoint == op {
			return true
		}
	}
	return false
}

// Coins implements chain.Chain, MaxScripts scripts a request.
func (c *Client) Coins(ctx context.Context, scripts [][]byte) ([]chain.Utxo, error) {
	var out []chain.Utxo
	seen := map[wire.OutPoint]bool{}
	for start := 0; start < len(scripts); start += MaxScripts {
		batch := scripts[start:min(start+MaxScripts, len(scripts))]
		asked := map[string][]byte{}
		req := &Request{Type: TypeCoins}
		for _, s := range batch {
			h := hex.EncodeToString(s)
			asked[h] = s
			req.Scripts = append(req.Scripts, h)
		}
		r, err := c.call(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, coin := range r.Coins {
			script, ok := asked[coin.Script]
			if !ok {
				return nil, fmt.Errorf("%w: a coin pays script %q, not asked", ErrBadAnswer, coin.Script)
			}
			h, err := chainhash.NewHashFromStr(coin.TxID)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
			}
			op := wire.OutPoint{Hash: *h, Index: coin.Vout}
			if seen[op] {
				return nil, fmt.Errorf("%w: coin %v twice", ErrBadAnswer, op)
			}
			seen[op] = true
			out = append(out, chain.Utxo{Coin: txbuild.Coin{Outpoint: op, Value: coin.ValueSat, PkScript: bytes.Clone(script)},
				Confirmations: coin.Confirmations, Coinbase: coin.Coinbase})
		}
	}
	return out, nil
}

// Used implements chain.Chain, MaxScripts scripts a request.
func (c *Client) Used(ctx context.Context, scripts [][]byte) ([]bool, error) {
	out := make([]bool, 0, len(scripts))
	for start := 0; start < len(scripts); start += MaxScripts {
		batch := scripts[start:min(start+MaxScripts, len(scripts))]
		req := &Request{Type: TypeUsed}
		for _, s := range batch {
			req.Scripts = append(req.Scripts, hex.EncodeToString(s))
		}
		r, err := c.call(ctx, req)
		if err != nil {
			return nil, err
		}
		if len(r.Used) != len(batch) {
			return nil, fmt.Errorf("%w: %d answers for %d scripts", ErrBadAnswer, len(r.Used), len(batch))
		}
		out = append(out, r.Used...)
	}
	return out, nil
}

// Faucet asks a regtest server's faucet to pay amount to script (a block
// is mined to confirm it); it returns the txid. Servers without a faucet,
// and every network but regtest, refuse (code no_faucet).
func (c *Client) Faucet(ctx context.Context, script []byte, amountSat int64) (string, error) {
	r, err := c.call(ctx, &Request{Type: TypeFaucet, Script: hex.EncodeToString(script), AmountSat: amountSat})
	if err != nil {
		return "", err
	}
	if r.TxID == "" {
		return "", fmt.Errorf("%w: faucet answer without txid", ErrBadAnswer)
	}
	return r.TxID, nil
}

func decodeTx(s string) (*wire.MsgTx, error) {
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) == 0 {
		return nil, errors.New("not a transaction")
	}
	tx := new(wire.MsgTx)
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	return tx, nil
}
