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
	batchTimeout = 30 * time.Second
)

// batcher sends JSON-RPC batches (a JSON array of requests, which btcd
// answers with an array of replies since v0.23) over its own HTTP client,
// bound to the caller's context: rpcclient's batch mode waits without a
// deadline for a reply that may never list every request.
type batcher struct {
	url        string
	user, pass string
	http       *http.Client
}

func newBatcher(host, user, pass string, certPEM []byte) (*batcher, error) {
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
	return &batcher{url: scheme + "://" + host, user: user, pass: pass, http: &http.Client{Transport: tr}}, nil
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

// call sends one batch and returns each request's reply, in order. A
// reply missing, duplicated or naming an unknown id fails the batch.
func (b *batcher) call(ctx context.Context, reqs []batchRequest) ([]batchReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	body, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.SetBasicAuth(b.user, b.pass)
	hr.Header.Set("Content-Type", "application/json")
	res, err := b.http.Do(hr)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxBatchReply+1))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("batch request: HTTP %s: %.200s", res.Status, raw)
	}
	if len(raw) > maxBatchReply {
		return nil, fmt.Errorf("batch reply over %d bytes", maxBatchReply)
	}
	return parseBatchReply(raw, len(reqs))
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
		replies, err := c.batch.call(ctx, reqs)
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
