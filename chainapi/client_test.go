package chainapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chainapi"
)

// liar answers every request with what answer makes of it: a dishonest or
// broken server. (The honest one, sipserver on a real node, is tested in
// sipserver's TestBitcoinAPIClient.)
func liar(answer func(r chainapi.Request) string) chainapi.RoundTrip {
	return func(ctx context.Context, body []byte) ([]byte, error) {
		var r chainapi.Request
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, err
		}
		return []byte(answer(r)), nil
	}
}

// TestClientRefusesBadAnswers: an answer that does not answer the request
// is an error (ErrBadAnswer), never data the wallet or agents act on.
func TestClientRefusesBadAnswers(t *testing.T) {
	ctx := context.Background()
	params := &chaincfg.RegressionNetParams
	txid := strings.Repeat("ab", 32)
	script := []byte{0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	h, _ := chainhash.NewHashFromStr(txid)
	cases := []struct {
		name   string
		answer func(r chainapi.Request) string
		call   func(c *chainapi.Client) error
	}{
		{"another id", func(r chainapi.Request) string { return `{"v":1,"type":"tip","id":"999","height":5}` },
			func(c *chainapi.Client) error { _, err := c.TipHeight(ctx); return err }},
		{"another type", func(r chainapi.Request) string {
			return `{"v":1,"type":"fee","id":"` + r.ID + `","fee_rate_sat_per_kvb":5}`
		},
			func(c *chainapi.Client) error { _, err := c.TipHeight(ctx); return err }},
		{"fee rate above the cap", func(r chainapi.Request) string {
			return `{"v":1,"type":"fee","id":"` + r.ID + `","fee_rate_sat_per_kvb":50000000}`
		}, func(c *chainapi.Client) error { _, err := c.FeeRate(ctx, 6); return err }},
		{"a coin of a script not asked", func(r chainapi.Request) string {
			return `{"v":1,"type":"coins","id":"` + r.ID + `","coins":[{"txid":"` + txid + `","vout":0,"value_sat":5000,"confirmations":1,"script":"0014ff"}]}`
		}, func(c *chainapi.Client) error { _, err := c.Coins(ctx, [][]byte{script}); return err }},
		{"the same coin twice", func(r chainapi.Request) string {
			coin := `{"txid":"` + txid + `","vout":0,"value_sat":5000,"confirmations":1,"script":"` + r.Scripts[0] + `"}`
			return `{"v":1,"type":"coins","id":"` + r.ID + `","coins":[` + coin + `,` + coin + `]}`
		}, func(c *chainapi.Client) error { _, err := c.Coins(ctx, [][]byte{script}); return err }},
		{"used of another length", func(r chainapi.Request) string { return `{"v":1,"type":"used","id":"` + r.ID + `","used":[true,true]}` },
			func(c *chainapi.Client) error { _, err := c.Used(ctx, [][]byte{script}); return err }},
		{"a tx that is not the txid", func(r chainapi.Request) string {
			return `{"v":1,"type":"tx","id":"` + r.ID + `","tx":"01000000000000000000"}`
		}, func(c *chainapi.Client) error { _, err := c.Tx(ctx, *h); return err }},
		{"a spend that does not spend the outpoint", func(r chainapi.Request) string {
			tx := wire.NewMsgTx(2)
			tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 7}})
			tx.AddTxOut(wire.NewTxOut(1000, script))
			var b strings.Builder
			tx.Serialize(hexWriter{&b})
			return `{"v":1,"type":"spend_of","id":"` + r.ID + `","spend":{"txid":"` + tx.TxHash().String() + `","confirmations":1,"tx":"` + b.String() + `"}}`
		}, func(c *chainapi.Client) error { _, err := c.SpendOf(ctx, wire.OutPoint{Hash: *h}, script); return err }},
		{"a broadcast answered with another txid", func(r chainapi.Request) string {
			return `{"v":1,"type":"broadcast","id":"` + r.ID + `","txid":"` + txid + `"}`
		}, func(c *chainapi.Client) error { return c.Broadcast(ctx, wire.NewMsgTx(2)) }},
		{"not JSON", func(r chainapi.Request) string { return `<html>` },
			func(c *chainapi.Client) error { _, err := c.TipHeight(ctx); return err }},
	}
	for _, tc := range cases {
		err := tc.call(chainapi.NewClient(params, liar(tc.answer)))
		if !errors.Is(err, chainapi.ErrBadAnswer) {
			t.Errorf("%s: %v, want ErrBadAnswer", tc.name, err)
		}
	}
}

// TestClientCodes: refusals keep their codes; broadcast refusals are
// chain's errors; a rate limit is retried.
func TestClientCodes(t *testing.T) {
	ctx := context.Background()
	params := &chaincfg.RegressionNetParams
	c := chainapi.NewClient(params, liar(func(r chainapi.Request) string {
		return `{"v":1,"type":"error","id":"` + r.ID + `","code":"conflict","reason":"input spent"}`
	}))
	if err := c.Broadcast(ctx, wire.NewMsgTx(2)); !errors.Is(err, chain.ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	tries := 0
	c = chainapi.NewClient(params, liar(func(r chainapi.Request) string {
		if tries++; tries < 3 {
			return `{"v":1,"type":"error","code":"rate_limit","reason":"slow down"}`
		}
		return `{"v":1,"type":"tip","id":"` + r.ID + `","height":7}`
	}))
	if h, err := c.TipHeight(ctx); err != nil || h != 7 || tries != 3 {
		t.Fatalf("after two rate limits: %d %v (%d tries)", h, err, tries)
	}
	var ae *chainapi.APIError
	c = chainapi.NewClient(params, liar(func(r chainapi.Request) string {
		return `{"v":1,"type":"error","code":"no_faucet","reason":"none"}`
	}))
	if _, err := c.Faucet(ctx, []byte{0}, 5); !errors.As(err, &ae) || ae.Code != "no_faucet" {
		t.Fatalf("no faucet: %v", err)
	}
	c = chainapi.NewClient(params, func(context.Context, []byte) ([]byte, error) { return nil, errors.New("WebSocket closed") })
	if _, err := c.TipHeight(ctx); !errors.Is(err, chainapi.ErrUnreachable) {
		t.Fatalf("no round trip: %v", err)
	}
}

type hexWriter struct{ b *strings.Builder }

func (w hexWriter) Write(p []byte) (int, error) {
	const digits = "0123456789abcdef"
	for _, c := range p {
		w.b.WriteByte(digits[c>>4])
		w.b.WriteByte(digits[c&15])
	}
	return len(p), nil
}
