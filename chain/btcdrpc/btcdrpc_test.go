package btcdrpc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/txbuild"
)

// TestFeeRateFallback: a node without a fee estimate (any regtest node)
// gives 2 sat/vB on regtest; taken for another network, the client
// refuses to guess unless a fallback is configured, which it then uses.
func TestFeeRateFallback(t *testing.T) {
	env := regtest.New(t)
	n := env.Node
	ctx := context.Background()
	client := func(params *chaincfg.Params, fallback txbuild.FeeRate) *btcdrpc.Client {
		c, err := btcdrpc.New(btcdrpc.Config{Host: n.RPCAddr, User: n.RPCUser, Pass: n.RPCPass, Params: params, FallbackFee: fallback})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	if r, err := client(&chaincfg.RegressionNetParams, 0).FeeRate(ctx, 6); err != nil || r != 2000 {
		t.Fatalf("regtest: %d %v", r, err)
	}
	if r, err := client(&chaincfg.MainNetParams, 0).FeeRate(ctx, 6); !errors.Is(err, btcdrpc.ErrNoFeeEstimate) {
		t.Fatalf("mainnet without a fallback: %d %v", r, err)
	}
	if r, err := client(&chaincfg.MainNetParams, 15_000).FeeRate(ctx, 6); err != nil || r != 15_000 {
		t.Fatalf("mainnet with a fallback: %d %v", r, err)
	}
}

// TestTxStatuses: the batched status of a confirmed, an unconfirmed and an
// unknown transaction is what TxStatus says of each, over more questions
// than fit in one request.
func TestTxStatuses(t *testing.T) {
	env := regtest.New(t)
	ctx := context.Background()
	addr, err := env.Faucet.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	confirmed := env.Fund(addr, 50_000).TxHash()
	env.Mine(1)
	mem, err := env.Faucet.Send(ctx, addr, 40_000, regtest.FeeRate)
	if err != nil {
		t.Fatal(err)
	}
	unconfirmed := mem.TxHash()
	unknown := chainhash.Hash{1, 2, 3}
	var ids []chainhash.Hash
	for i := range 450 {
		ids = append(ids, []chainhash.Hash{confirmed, unconfirmed, unknown}[i%3])
	}
	got, err := env.Chain.TxStatuses(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("%d statuses for %d txids", len(got), len(ids))
	}
	for i, id := range ids {
		want, err := env.Chain.TxStatus(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got[i] != want {
			t.Fatalf("txid %d (%s): batched %+v, single %+v", i, id, got[i], want)
		}
	}
	if got[0] != (chain.TxStatus{Known: true, Confirmations: 2}) || got[1] != (chain.TxStatus{Known: true}) || got[2] != (chain.TxStatus{}) {
		t.Fatalf("statuses %+v", got[:3])
	}
}

// TestTxStatusesBadReplies: a reply that leaves out a request, repeats or
// invents an id, is not JSON, or carries another error is an error, never
// a status made up for the request left unanswered.
func TestTxStatusesBadReplies(t *testing.T) {
	for name, reply := range map[string]string{
		"missing":   `[{"id":0,"result":{"confirmations":1},"error":null}]`,
		"duplicate": `[{"id":0,"result":{"confirmations":1},"error":null},{"id":0,"result":{"confirmations":1},"error":null}]`,
		"unknown":   `[{"id":0,"result":{"confirmations":1},"error":null},{"id":7,"result":{"confirmations":1},"error":null}]`,
		"no id":     `[{"result":{"confirmations":1},"error":null},{"id":1,"result":{"confirmations":1},"error":null}]`,
		"not json":  `<html>busy</html>`,
		"error":     `[{"id":0,"result":null,"error":{"code":-32603,"message":"internal"}},{"id":1,"result":{"confirmations":1},"error":null}]`,
		"result":    `[{"id":0,"result":"nope","error":null},{"id":1,"result":{"confirmations":1},"error":null}]`,
		"null":      `[{"id":0,"result":null,"error":null},{"id":1,"result":{"txid":"ab","confirmations":1},"error":null}]`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, reply)
			}))
			defer srv.Close()
			c, err := btcdrpc.New(btcdrpc.Config{Host: strings.TrimPrefix(srv.URL, "http://"), User: "u", Pass: "p", Params: &chaincfg.RegressionNetParams})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.TxStatuses(context.Background(), []chainhash.Hash{{1}, {2}})
			if err == nil {
				t.Fatalf("accepted %q: %+v", reply, got)
			}
		})
	}
}

// TestCallsEndWithContext: a node that takes a request and never answers
// holds a call only as long as the caller's context allows.
func TestCallsEndWithContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := btcdrpc.New(btcdrpc.Config{Host: strings.TrimPrefix(srv.URL, "http://"), User: "u", Pass: "p", Params: &chaincfg.RegressionNetParams})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.TipHeight(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TipHeight against a silent node: %v", err)
	}
	if _, err := c.TxStatus(ctx, chainhash.Hash{1}); err == nil {
		t.Fatal("TxStatus against a silent node succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("calls held %v past their context", d)
	}
}

// TestBusyNodeAskedAgain: a node at its --rpcmaxclients answers "503 Too
// busy"; the call is made again after a pause, and one client never has
// more than a few requests in flight.
func TestBusyNodeAskedAgain(t *testing.T) {
	var mu sync.Mutex
	inFlight, most, busy := 0, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		refuse := busy < 5
		busy++
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		time.Sleep(5 * time.Millisecond)
		if refuse {
			http.Error(w, "503 Too busy.  Try again later.", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"result":812,"error":null,"id":1}`)
	}))
	defer srv.Close()
	c, err := btcdrpc.New(btcdrpc.Config{Host: strings.TrimPrefix(srv.URL, "http://"), User: "u", Pass: "p", Params: &chaincfg.RegressionNetParams})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if h, err := c.TipHeight(ctx); err != nil || h != 812 {
				t.Errorf("TipHeight: %d, %v", h, err)
			}
		}()
	}
	wg.Wait()
	if most > 4 {
		t.Fatalf("%d requests in flight at once", most)
	}
}
