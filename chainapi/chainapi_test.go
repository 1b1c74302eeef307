package chainapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	good := []string{
		`{"v":1,"type":"tip","id":"1"}`,
		`{"v":1,"type":"fee","target":6}`,
		`{"v":1,"type":"coins","address":"bcrt1qxyz"}`,
		`{"v":1,"type":"coins","script":"0014aa"}`,
		`{"v":1,"type":"broadcast","tx":"0200"}`,
		`{"v":1,"type":"tx_status","txid":"` + strings.Repeat("ab", 32) + `"}`,
		`{"v":1,"type":"watch","script":"0014aa","expires":60}`,
		`{"v":1,"type":"coins","scripts":["0014aa","0014bb"]}`,
		`{"v":1,"type":"used","scripts":["0014aa"]}`,
		`{"v":1,"type":"spend_of","outpoint":"` + strings.Repeat("ab", 32) + `:0","script":"0020aa"}`,
		`{"v":1,"type":"tx","txid":"` + strings.Repeat("ab", 32) + `"}`,
		`{"v":1,"type":"faucet","address":"bcrt1qxyz","amount_sat":100000}`,
	}
	for _, g := range good {
		if _, err := Decode([]byte(g)); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	badOnes := []string{
		`{"v":2,"type":"tip"}`, `{"v":1,"type":"steal"}`, `{"v":1,"type":"coins"}`,
		`{"v":1,"type":"coins","address":"a","script":"00"}`, `{"v":1,"type":"broadcast","tx":"zz"}`,
		`{"v":1,"type":"tx_status","txid":"ab"}`, `{"v":1,"type":"tip","extra":1}`, `[1]`, `{"v":1,"type":"tip"} {}`,
		`{"v":1,"type":"fee","target":-1}`, `{"v":1,"type":"watch","script":"00","expires":99999}`,
		`{"v":1,"type":"used","scripts":[]}`, `{"v":1,"type":"used"}`, `{"v":1,"type":"used","scripts":["zz"]}`,
		`{"v":1,"type":"used","scripts":[` + strings.Repeat(`"00",`, MaxScripts) + `"00"]}`,
		`{"v":1,"type":"coins","scripts":["00"],"script":"00"}`, `{"v":1,"type":"watch","scripts":["00"]}`,
		`{"v":1,"type":"spend_of","outpoint":"` + strings.Repeat("ab", 32) + `:0"}`,
		`{"v":1,"type":"spend_of","outpoint":"` + strings.Repeat("ab", 32) + `:01","script":"00"}`,
		`{"v":1,"type":"spend_of","outpoint":"` + strings.Repeat("ab", 32) + `:4294967296","script":"00"}`,
		`{"v":1,"type":"spend_of","outpoint":"ab:0","script":"00"}`,
		`{"v":1,"type":"faucet","address":"bcrt1qxyz"}`, `{"v":1,"type":"faucet","address":"bcrt1qxyz","amount_sat":-5}`,
		`{"v":1,"type":"tip","amount_sat":5}`, `{"v":1,"type":"coins","script":"00","expires":5}`,
	}
	for _, b := range badOnes {
		if _, err := Decode([]byte(b)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s accepted: %v", b, err)
		}
	}
}

// FuzzDecode: never a panic; what decodes re-encodes to an equal request.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"coins","script":"0014aa","id":"x"}`))
	f.Add([]byte(`{"v":1,"type":"tx_status","txid":"` + strings.Repeat("ab", 32) + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, _ := json.Marshal(r)
		r2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %v %+v %+v", err, r, r2)
		}
	})
}

// TestDecodeResponse: answers are checked before a client reads them.
func TestDecodeResponse(t *testing.T) {
	good := []string{
		`{"v":1,"type":"tip","height":5}`,
		`{"v":1,"type":"coins","coins":[{"txid":"` + strings.Repeat("ab", 32) + `","vout":1,"value_sat":5,"confirmations":0,"script":"00"}]}`,
		`{"v":1,"type":"spend_of","spend":{"txid":"` + strings.Repeat("ab", 32) + `","confirmations":2,"tx":"0200"}}`,
		`{"v":1,"type":"error","code":"limit","reason":"x"}`,
		`{"v":1,"type":"tip","height":5,"from_a_newer_server":1}`,
	}
	for _, g := range good {
		if _, err := DecodeResponse([]byte(g)); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	badOnes := []string{
		`{"v":2,"type":"tip"}`, `{"v":1}`, `{"v":1,"type":"tip","height":-1}`, `{"v":1,"type":"fee","fee_rate_sat_per_kvb":-1}`,
		`{"v":1,"type":"coins","coins":[{"txid":"ab","vout":1,"value_sat":5,"confirmations":0}]}`,
		`{"v":1,"type":"coins","coins":[{"txid":"` + strings.Repeat("ab", 32) + `","vout":1,"value_sat":0,"confirmations":0}]}`,
		`{"v":1,"type":"coins","coins":[{"txid":"` + strings.Repeat("ab", 32) + `","vout":1,"value_sat":2100000000000001,"confirmations":0}]}`,
		`{"v":1,"type":"tx_status","txid":"` + strings.Repeat("ab", 32) + `","known":true,"confirmations":-3}`,
		`{"v":1,"type":"tx","tx":"xyz"}`, `{"v":1,"type":"tip"} {}`, `null`,
	}
	for _, b := range badOnes {
		if _, err := DecodeResponse([]byte(b)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s accepted: %v", b, err)
		}
	}
}
