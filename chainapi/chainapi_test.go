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
