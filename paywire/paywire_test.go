package paywire

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

const cid = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:1"

func int64p(v int64) *int64 { return &v }

// samples holds one valid message of each type.
func samples() []Message {
	return []Message{
		&Hello{Versions: []int{1}, Agent: "paysip-go/0.1"},
		&Hello{Versions: []int{1, 2}, Resume: cid},
		&ResumeProof{ChannelID: cid, Sig: []byte{0x30, 0x44, 1, 2}},
		&Terms{PayeeKey: bytes.Repeat([]byte{2}, 33), PriceSatPerMin: 60000, PayoutScript: []byte{0, 20, 1, 2},
			MinChannelSat: 100000, MinExpiryHeight: 600, MaxExpiryHeight: 1600, MinPaymentSat: 2000, MinStepSat: 1},
		&RefundRequest{PayerKey: bytes.Repeat([]byte{3}, 33), FundingTx: []byte{1, 2, 3}, FundingVout: 0, RefundTx: []byte{4, 5}},
		&RefundSigned{ChannelID: cid, Sig: []byte{0x30, 1}},
		&Funded{ChannelID: cid, FundingTx: []byte{9}},
		&Open{ChannelID: cid, CapacitySat: 1000000, PaidSat: 0, ExpiryHeight: 700},
		&Pay{ChannelID: cid, PaidSat: 1000, Sig: []byte{0x30, 0x83}},
		&Ack{ChannelID: cid, PaidSat: 1000},
		&Close{ChannelID: cid, Reason: "hangup"},
		&Closed{ChannelID: cid, PaidSat: 1000, SettlementTxID: strings.Repeat("ab", 32)},
		&Error{Code: CodePaymentTooLow, Reason: "not above the best payment held", ChannelID: cid, Expected: int64p(1000)},
	}
}

func TestRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range samples() {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %s:\n got %#v\nwant %#v", b, got, m)
		}
		seen[m.Type()] = true
	}
	for typ := range registry {
		if !seen[typ] {
			t.Errorf("no sample of %q", typ)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name string
		in   string
		kind error
	}{
		{"not json", `{"v":1,`, ErrMalformed},
		{"array", `[1,2]`, ErrMalformed},
		{"null", `null`, ErrMalformed},
		{"no type", `{"v":1}`, ErrMissingField},
		{"unknown type", `{"v":1,"type":"gimme"}`, ErrUnknownType},
		{"no version", `{"type":"ack","channel_id":"` + cid + `","paid_sat":1}`, ErrMissingField},
		{"unknown version", `{"v":2,"type":"ack","channel_id":"` + cid + `","paid_sat":1}`, ErrUnknownVersion},
		{"version zero", `{"v":0,"type":"ack","channel_id":"` + cid + `","paid_sat":1}`, ErrMissingField},
		{"missing field", `{"v":1,"type":"ack","channel_id":"` + cid + `"}`, ErrMissingField},
		{"null field", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":null}`, ErrMissingField},
		{"negative amount", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":-5}`, ErrBadAmount},
		{"zero payment", `{"v":1,"type":"pay","channel_id":"` + cid + `","paid_sat":0,"sig":"30"}`, ErrBadAmount},
		{"above supply", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":2100000000000001}`, ErrBadAmount},
		{"int64 overflow", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":9223372036854775808}`, ErrBadAmount},
		{"fraction", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":1.5}`, ErrBadAmount},
		{"amount as string", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":"5"}`, ErrBadField},
		{"bad channel id", `{"v":1,"type":"ack","channel_id":"abc:1","paid_sat":5}`, ErrBadField},
		{"channel id vout leading zero", `{"v":1,"type":"ack","channel_id":"` + strings.Repeat("a", 64) + `:01","paid_sat":5}`, ErrBadField},
		{"bad hex", `{"v":1,"type":"pay","channel_id":"` + cid + `","paid_sat":5,"sig":"zz"}`, ErrBadField},
		{"upper hex", `{"v":1,"type":"pay","channel_id":"` + cid + `","paid_sat":5,"sig":"AB"}`, ErrBadField},
		{"empty sig", `{"v":1,"type":"pay","channel_id":"` + cid + `","paid_sat":5,"sig":""}`, ErrBadField},
		{"short key", `{"v":1,"type":"terms","payee_key":"02","price_sat_per_min":1,"payout_script":"00","min_channel_sat":1,"min_expiry_height":1,"max_expiry_height":2,"min_payment_sat":1,"min_step_sat":1}`, ErrBadField},
		{"window inverted", `{"v":1,"type":"terms","payee_key":"` + strings.Repeat("02", 33) + `","price_sat_per_min":1,"payout_script":"00","min_channel_sat":1,"min_expiry_height":9,"max_expiry_height":2,"min_payment_sat":1,"min_step_sat":1}`, ErrBadField},
		{"hello without versions", `{"v":1,"type":"hello","versions":[]}`, ErrBadField},
		{"hello negative version", `{"v":1,"type":"hello","versions":[-1]}`, ErrBadField},
		{"error without code", `{"v":1,"type":"error","code":"","reason":"x"}`, ErrBadField},
		{"oversize", `{"v":1,"type":"error","code":"x","reason":"` + strings.Repeat("a", MaxMessageSize) + `"}`, ErrTooLarge},
		{"long reason", `{"v":1,"type":"close","channel_id":"` + cid + `","reason":"` + strings.Repeat("a", maxText+1) + `"}`, ErrBadField},
		{"trailing garbage", `{"v":1,"type":"ack","channel_id":"` + cid + `","paid_sat":1} x`, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %#v", m)
			}
			if !errors.Is(err, c.kind) {
				t.Fatalf("got %v, want kind %v", err, c.kind)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Error() == "" {
				t.Fatalf("not a *DecodeError: %T", err)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	if _, err := Encode(&Pay{ChannelID: cid, PaidSat: -1, Sig: []byte{1}}); !errors.Is(err, ErrBadAmount) {
		t.Fatalf("encoded a negative payment: %v", err)
	}
}

func TestNegotiate(t *testing.T) {
	if v := Negotiate([]int{1, 2, 3}); v != 1 {
		t.Fatalf("Negotiate = %d", v)
	}
	if v := Negotiate([]int{7}); v != 0 {
		t.Fatalf("Negotiate of unknown = %d", v)
	}
}

// TestProtocolDocExamples decodes every JSON example of docs/protocol.md, so
// that the specification cannot drift from the code.
func TestProtocolDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	seen := map[string]bool{}
	for _, b := range blocks {
		m, err := Decode(bytes.TrimSpace(b[1]))
		if err != nil {
			t.Errorf("docs/protocol.md example does not decode: %v\n%s", err, b[1])
			continue
		}
		seen[m.Type()] = true
	}
	for typ := range registry {
		if !seen[typ] {
			t.Errorf("docs/protocol.md has no example of %q", typ)
		}
	}
}
