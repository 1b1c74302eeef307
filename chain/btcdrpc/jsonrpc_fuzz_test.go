package btcdrpc

import (
	"testing"

	"github.com/btcsuite/btcd/btcjson"
)

// FuzzBatchReply: whatever the node answers to a batch, the reply is
// matched to its requests or refused, never a panic; a status is read
// from each matched reply or refused.
func FuzzBatchReply(f *testing.F) {
	f.Add([]byte(`[{"id":0,"result":{"txid":"ab","confirmations":1},"error":null},{"id":1,"result":null,"error":{"code":-5,"message":"No information"}}]`), uint8(2))
	f.Add([]byte(`[{"id":1,"result":{"txid":"ab"}},{"id":0,"result":{"txid":"cd","confirmations":7}}]`), uint8(2))
	f.Add([]byte(`[{"id":0,"result":{"confirmations":-1}}]`), uint8(1))
	f.Add([]byte(`{"id":0}`), uint8(1))
	f.Fuzz(func(t *testing.T, raw []byte, n uint8) {
		replies, err := parseBatchReply(raw, int(n))
		if err != nil {
			return
		}
		if len(replies) != int(n) {
			t.Fatalf("%d replies for %d requests", len(replies), n)
		}
		for i, r := range replies {
			if r.ID == nil || *r.ID != i {
				t.Fatalf("reply %d has id %v", i, r.ID)
			}
			if st, err := txStatusOf(r); err == nil && (st.Confirmations < 0 || !st.Known && st.Confirmations != 0) {
				t.Fatalf("status %+v", st)
			}
		}
	})
}

// FuzzReply: a single request's reply, read into each result type the
// client asks for, is decoded or refused, never a panic.
func FuzzReply(f *testing.F) {
	f.Add([]byte(`{"result":812,"error":null,"id":1}`))
	f.Add([]byte(`{"result":null,"error":{"code":-26,"message":"TX rejected"},"id":1}`))
	f.Add([]byte(`{"result":[{"txid":"ab","vin":[{"txid":"cd","vout":1}],"vout":[{"n":0,"scriptPubKey":{"hex":"00"}}]}],"error":null,"id":1}`))
	f.Add([]byte(`{"result":"0100","id":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var h int32
		var fee float64
		var hex string
		var txs []*btcjson.SearchRawTransactionsResult
		for _, r := range []any{&h, &fee, &hex, &txs, nil} {
			parseReply(raw, "m", r)
		}
	})
}
