package btcdrpc

import "testing"

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
