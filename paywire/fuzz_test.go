package paywire

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every refusal is a
// *DecodeError of one of the documented kinds (the peer is told which),
// and that whatever it accepts encodes again and decodes to the same
// message (round trip).
func FuzzDecode(f *testing.F) {
	for _, m := range samples() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"type":"ack","channel_id":"x","paid_sat":-1}`))
	f.Add([]byte(`{"v":99,"type":"pay"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil {
				t.Fatal("message returned with an error")
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("refusal %T is not a *DecodeError: %v", err, err)
			}
			known := false
			for _, k := range []error{ErrTooLarge, ErrMalformed, ErrUnknownVersion, ErrUnknownType, ErrMissingField, ErrBadAmount, ErrBadField} {
				known = known || errors.Is(err, k)
			}
			if !known {
				t.Fatalf("refusal of an unknown kind %v: %v", de.Kind, err)
			}
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n%#v\n%#v", m, m2)
		}
	})
}

// FuzzDecodePayFast checks the pay fast path against the general decoder:
// whatever the fast path takes, the general path decodes to the same
// message, or refuses with the same kind of error after validation.
func FuzzDecodePayFast(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"type":"pay","channel_id":"4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0","paid_sat":1000,"sig":"3044"}`,
		` { "sig" : "00" , "paid_sat" : -5 , "channel_id" : "x:1", "type":"pay","v":1 } `,
		`{"v":1,"type":"pay","channel_id":"a:0","paid_sat":0,"sig":""}`,
		`{"v":1,"type":"pay","channel_id":"a:0","paid_sat":1e3,"sig":"00"}`,
		`{"v":1,"type":"pay","channel_id":"a:0","paid_sat":01,"sig":"00"}`,
		`{"v":1,"type":"pay","channel_id":"a:0","paid_sat":1,"sig":"0A"}`,
		`{"v":1,"type":"pay","channel_id":"a:0","paid_sat":1,"sig":"00","sig":"01"}`,
		`{"v":2,"type":"pay","channel_id":"a:0","paid_sat":1,"sig":"00"}`,
		`{"v":1,"type":"pay","channel_id":"a:0","paid_sat":999999999999999999,"sig":"00"}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodePayFast(b)
		if !ok {
			return
		}
		slow, err := decodeGeneral(b)
		fde := fast.validate()
		if err != nil {
			if fde == nil {
				t.Fatalf("fast path took %q, general path refused it: %v", b, err)
			}
			return
		}
		if fde != nil {
			t.Fatalf("fast path's message fails validation (%v), general path took %q", fde, b)
		}
		if !reflect.DeepEqual(slow, Message(fast)) {
			t.Fatalf("%q: fast %#v, general %#v", b, fast, slow)
		}
	})
}
