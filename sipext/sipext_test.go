package sipext

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The 402 example of docs/protocol.md.
const docTerms = "version=1;price-sat-per-min=60000;payee-key=02c6e1;transports=datachannel,message"

func TestTermsRoundTrip(t *testing.T) {
	got, err := ParseTerms(docTerms)
	if err != nil {
		t.Fatal(err)
	}
	want := Terms{Version: 1, PriceSatPerMin: 60_000, PayeeKey: "02c6e1", Transports: []string{"datachannel", "message"}}
	if !reflect.DeepEqual(got, want) || got.String() != docTerms {
		t.Fatalf("%+v -> %s", got, got.String())
	}
	for _, bad := range []string{"", "version=1", "price-sat-per-min=5", "version=1;price-sat-per-min=-5", "version=1;price-sat-per-min=x",
		"version=1;price-sat-per-min=1;price-sat-per-min=2", "version=1;price-sat-per-min=2100000000000001", strings.Repeat("a", 2000)} {
		if _, err := ParseTerms(bad); !errors.Is(err, ErrBadTerms) {
			t.Errorf("ParseTerms(%.40q) = %v", bad, err)
		}
	}
}

func TestContactParams(t *testing.T) {
	got := Offer{PriceSatPerMin: 60_000, Name: `The "tutor"`}.ContactParams("sip:tutor@paysip.test")
	want := [][2]string{{ParamAOR, `"sip:tutor@paysip.test"`}, {ParamPrice, "60000"}, {ParamName, `"The tutor"`}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%v", got)
	}
}

func TestDecodeDirectory(t *testing.T) {
	d, err := DecodeDirectory(strings.NewReader(`{"domain":"paysip.test","entries":[{"aor":"sip:tutor@paysip.test","price_sat_per_min":60000},{"aor":"","price_sat_per_min":5},{"aor":"sip:x@y","price_sat_per_min":0}]}`))
	if err != nil || len(d.Entries) != 1 || d.Entries[0].PriceSatPerMin != 60_000 {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := DecodeDirectory(strings.NewReader(`{"entries":`)); !errors.Is(err, ErrBadDirectory) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzParseTerms(f *testing.F) {
	f.Add(docTerms)
	f.Add("version=1;price-sat-per-min=1;min-deposit-sat=1000")
	f.Fuzz(func(t *testing.T, v string) {
		tm, err := ParseTerms(v)
		if err != nil {
			return
		}
		again, err := ParseTerms(tm.String())
		if err != nil || again.PriceSatPerMin != tm.PriceSatPerMin || again.Version != tm.Version {
			t.Fatalf("%q -> %q: %+v %v", v, tm.String(), again, err)
		}
	})
}

func FuzzDecodeDirectory(f *testing.F) {
	f.Add(`{"entries":[{"aor":"sip:tutor@paysip.test","price_sat_per_min":60000}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		d, err := DecodeDirectory(strings.NewReader(body))
		if err != nil {
			return
		}
		for _, l := range d.Entries {
			if l.AOR == "" || l.PriceSatPerMin <= 0 {
				t.Fatalf("kept %+v", l)
			}
		}
	})
}
