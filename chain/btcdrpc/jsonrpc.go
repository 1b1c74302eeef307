package btcdrpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/chain"
)

// Limits of one batched request (the node is ours, but what it answers is
// still read within bounds).
const (
	// maxBatch is how many questions go in one HTTP request.
	maxBatch = 200
	// maxBatchReply bounds one reply's body: a verbose transaction is a
	// few kilobytes of JSON, a large one some hundreds.
	maxBatchReply = 64 << 20
	// batchTimeout bounds a request whose context has no deadline.
	batchTimeout = 2 * time.Minute
)

// jsonRPC speaks JSON-RPC to btcd over its own HTTP client, every request
// bound to the caller's context (rpcclient's calls take none, and its HTTP
// client has no timeout: a node that stops answering held its callers for
// ever). It sends single requests and batches (a JSON array of requests,
// which btcd answers with an array of replies since v0.23).
type jsonRPC struct {
	url        string
	user, pass string
	http       *http.Client
	// slots bounds this client's requests in flight: btcd serves at most
	// --rpcmaxclients (10 by default) at once and answers the others
	// "503 Too busy" (rpcclient sent one request at a time).
	slots chan struct{}
}

// maxInFlight is how many requests one client has in flight at most.
const maxInFlight = 4

func newJSONRPC(host, user, pass string, certPEM []byte) (*jsonRPC, error) {
	scheme := "http"
	tr := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	if certPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(certPEM) {
			return nil, errors.New("RPC certificate: no PEM certificate found")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	return &jsonRPC{url: scheme + "://" + host, user: user, pass: pass, http: &http.Client{Transport: tr}, slots: make(chan struct{}, maxInFlight)}, nil
}

type batchRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      int    `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type batchReply struct {
	ID     *int              `json:"id"`
	Result json.RawMessage   `json:"result"`
	Error  *btcjson.RPCError `json:"error"`
}

// post sends one JSON-RPC body (a request, or a batch of them) and
// returns the reply's body, bounded; the request ends with ctx, or after
// batchTimeout when ctx has no deadline. A node too busy to take it (503,
// its --rpcmaxclients reached by other clients) is asked again after a
// pause, until ctx ends.
func (b *jsonRPC) post(ctx context.Context, body []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-b.slots }()
	pause := 10 * time.Millisecond
	for {
		raw, busy, err := b.postOnce(ctx, body)
		if !busy {
			return raw, err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (the node was too busy: %v)", ctx.Err(), err)
		}
		pause = min(2*pause, time.Second)
	}
}

// postOnce sends body once; busy reports the node's 503.
func (b *jsonRPC) postOnce(ctx context.Context, body []byte) (raw []byte, busy bool, err error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	hr.SetBasicAuth(b.user, b.pass)
	hr.Header.Set("Content-Type", "application/json")
	res, err := b.http.Do(hr)
	if err != nil {
		return nil, false, err
	}
	defer res.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(res.Body, maxBatchReply+1))
	if err != nil {
		return nil, false, err
	}
	if len(raw) > maxBatchReply {
		return nil, false, fmt.Errorf("RPC reply over %d bytes", maxBatchReply)
	}
	if res.StatusCode == http.StatusServiceUnavailable {
		return nil, true, fmt.Errorf("RPC: HTTP %s: %.200s", res.Status, raw)
	}
	// btcd answers an RPC error with HTTP 500 and the error in the body.
	if res.StatusCode != http.StatusOK && (len(raw) == 0 || raw[0] != '{' && raw[0] != '[') {
		return nil, false, fmt.Errorf("RPC: HTTP %s: %.200s", res.Status, raw)
	}
	return raw, false, nil
}

// call sends one batch and returns each request's reply, in order. A
// reply missing, duplicated or naming an unknown id fails the batch.
func (b *jsonRPC) call(ctx context.Context, reqs []batchRequest) ([]batchReply, error) {
	body, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	raw, err := b.post(ctx, body)
	if err != nil {
		return nil, err
	}
	return parseBatchReply(raw, len(reqs))
}

// callOne sends one request and decodes its result into result (nil:
// ignore it). An error the node answers is a *btcjson.RPCError.
func (b *jsonRPC) callOne(ctx context.Context, method string, params []any, result any) error {
	body, err := json.Marshal(batchRequest{JSONRPC: "1.0", ID: 1, Method: method, Params: params})
	if err != nil {
		return err
	}
	raw, err := b.post(ctx, body)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return parseReply(raw, method, result)
}

// parseReply reads a single request's reply into result (nil: ignore it);
// an error the node answers is returned as a *btcjson.RPCError.
func parseReply(raw []byte, method string, result any) error {
	var r batchReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s reply: %w", method, err)
	}
	if r.Error != nil {
		return r.Error
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, result); err != nil {
		return fmt.Errorf("%s reply: %w", method, err)
	}
	return nil
}

// parseBatchReply matches a batch's replies to its n requests (ids 0 to
// n-1), in order. A reply missing, duplicated or naming an unknown id
// fails the batch.
func parseBatchReply(raw []byte, n int) ([]batchReply, error) {
	var replies []batchReply
	if err := json.Unmarshal(raw, &replies); err != nil {
		return nil, fmt.Errorf("batch reply: %w", err)
	}
	out := make([]batchReply, n)
	seen := make([]bool, n)
	for _, r := range replies {
		if r.ID == nil || *r.ID < 0 || *r.ID >= n || seen[*r.ID] {
			return nil, fmt.Errorf("batch reply: unexpected id")
		}
		seen[*r.ID] = true
		out[*r.ID] = r
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("batch reply: no answer to request %d of %d", i, n)
		}
	}
	return out, nil
}

// txStatusOf reads one getrawtransaction reply.
func txStatusOf(r batchReply) (chain.TxStatus, error) {
	if r.Error != nil {
		if isNoTx(r.Error) {
			return chain.TxStatus{}, nil
		}
		return chain.TxStatus{}, r.Error
	}
	// btcd leaves confirmations out for a transaction in its mempool.
	var tx struct {
		TxID          string `json:"txid"`
		Confirmations int64  `json:"confirmations"`
	}
	if err := json.Unmarshal(r.Result, &tx); err != nil {
		return chain.TxStatus{}, fmt.Errorf("getrawtransaction reply: %w", err)
	}
	if tx.TxID == "" || tx.Confirmations < 0 {
		return chain.TxStatus{}, errors.New("getrawtransaction reply: not a transaction")
	}
	return chain.TxStatus{Known: true, Confirmations: tx.Confirmations}, nil
}

// TxStatuses implements chain.StatusBatcher: one getrawtransaction per
// txid, maxBatch to an HTTP request.
func (c *Client) TxStatuses(ctx context.Context, txids []chainhash.Hash) ([]chain.TxStatus, error) {
	out := make([]chain.TxStatus, 0, len(txids))
	for len(txids) > 0 {
		n := min(len(txids), maxBatch)
		reqs := make([]batchRequest, n)
		for i, id := range txids[:n] {
			reqs[i] = batchRequest{JSONRPC: "1.0", ID: i, Method: "getrawtransaction", Params: []any{id.String(), 1}}
		}
		replies, err := c.rpc.call(ctx, reqs)
		if err != nil {
			return nil, err
		}
		for _, r := range replies {
			st, err := txStatusOf(r)
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
		txids = txids[n:]
	}
	return out, nil
}

var _ chain.StatusBatcher = (*Client)(nil)
