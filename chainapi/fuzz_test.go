package chainapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeChecked: every refusal of a SIP API request is ErrBadRequest
// (answered 400 with its reason, never a 500), and every accepted request
// keeps the bounds Decode promises (version 1, a known type, an id of at
// most 64 bytes, a fee target in 0..1008, watch expiries in 0..3600, hex
// where hex is due) and encodes to JSON (the server echoes its id).
// FuzzDecode in chainapi_test.go checks the round trip.
func FuzzDecodeChecked(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"coins","script":"0014aa","id":"x"}`))
	f.Add([]byte(`{"v":1,"type":"watch","address":"bcrt1qxyz","expires":60}`))
	f.Add([]byte(`{"v":1,"type":"fee","target":6}`))
	f.Add([]byte(`{"v":1,"type":"broadcast","tx":"0200"}`))
	f.Add([]byte(`{"v":1,"type":"tx_status","txid":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(`{"v":1,"type":"tip"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if r != nil || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("refusal %v (request %v) is not ErrBadRequest", err, r)
			}
			return
		}
		if r.V != 1 || len(r.ID) > 64 || r.Target < 0 || r.Target > 1008 || r.Expires < 0 || r.Expires > 3600 {
			t.Fatalf("accepted out of bounds: %+v", r)
		}
		switch r.Type {
		case TypeTip, TypeFee:
		case TypeCoins, TypeWatch, TypeUnwatch:
			if (r.Address == "") == (r.Script == "") || !isHex(r.Script, 0) {
				t.Fatalf("accepted %+v", r)
			}
		case TypeBroadcast:
			if r.Tx == "" || !isHex(r.Tx, 0) {
				t.Fatalf("accepted %+v", r)
			}
		case TypeTxStatus:
			if !isHex(r.TxID, 64) {
				t.Fatalf("accepted %+v", r)
			}
		default:
			t.Fatalf("accepted unknown type %q", r.Type)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatal(err)
		}
	})
}
