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
	f.Add([]byte(`{"v":1,"type":"coins","scripts":["0014aa","00"]}`))
	f.Add([]byte(`{"v":1,"type":"used","scripts":["0014aa"]}`))
	f.Add([]byte(`{"v":1,"type":"spend_of","outpoint":"` + strings.Repeat("ab", 32) + `:7","script":"0020aa"}`))
	f.Add([]byte(`{"v":1,"type":"tx","txid":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(`{"v":1,"type":"faucet","script":"0014aa","amount_sat":100000}`))
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
		case TypeCoins, TypeWatch, TypeUnwatch, TypeFaucet:
			one := (r.Address == "") != (r.Script == "") && isHex(r.Script, 0) && len(r.Scripts) == 0
			many := r.Type == TypeCoins && r.Address == "" && r.Script == "" && len(r.Scripts) > 0 && len(r.Scripts) <= MaxScripts
			if !one && !many || (r.Type == TypeFaucet && r.AmountSat <= 0) {
				t.Fatalf("accepted %+v", r)
			}
		case TypeUsed:
			if len(r.Scripts) == 0 || len(r.Scripts) > MaxScripts {
				t.Fatalf("accepted %+v", r)
			}
			for _, s := range r.Scripts {
				if s == "" || !isHex(s, 0) {
					t.Fatalf("accepted %+v", r)
				}
			}
		case TypeSpendOf:
			if _, _, ok := strings.Cut(r.Outpoint, ":"); !ok || r.Script == "" || !isHex(r.Script, 0) {
				t.Fatalf("accepted %+v", r)
			}
		case TypeBroadcast:
			if r.Tx == "" || !isHex(r.Tx, 0) {
				t.Fatalf("accepted %+v", r)
			}
		case TypeTxStatus, TypeTx:
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

// FuzzDecodeResponse: a client never panics on a server's answer, every
// refusal is ErrBadRequest, and what it accepts keeps the bounds
// DecodeResponse promises.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"coins","coins":[{"txid":"` + strings.Repeat("ab", 32) + `","vout":1,"value_sat":5,"confirmations":0,"script":"00"}]}`))
	f.Add([]byte(`{"v":1,"type":"spend_of","spend":{"txid":"` + strings.Repeat("ab", 32) + `","confirmations":2,"tx":"0200"}}`))
	f.Add([]byte(`{"v":1,"type":"used","used":[true,false]}`))
	f.Add([]byte(`{"v":1,"type":"error","code":"limit","reason":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			if r != nil || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("refusal %v is not ErrBadRequest", err)
			}
			return
		}
		if r.V != 1 || r.Type == "" || r.Height < 0 || r.FeeRate < 0 || len(r.Coins) > MaxCoins || len(r.Used) > MaxScripts {
			t.Fatalf("accepted out of bounds: %+v", r)
		}
		for _, c := range r.Coins {
			if c.ValueSat <= 0 || c.ValueSat > maxMoney || c.Confirmations < 0 || !isHex(c.TxID, 64) {
				t.Fatalf("accepted coin %+v", c)
			}
		}
	})
}
