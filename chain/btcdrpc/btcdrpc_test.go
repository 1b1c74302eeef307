package btcdrpc_test

import (
	"context"
	"errors"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
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
