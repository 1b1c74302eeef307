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
