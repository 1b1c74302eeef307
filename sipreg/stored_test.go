package sipreg

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// jsonRecord is b as paysip wrote it before format 2 (JSON, version 1):
// the rows already in users' databases.
func jsonRecord(t testing.TB, b *Binding, removed bool, now time.Time, keep time.Duration) Record {
	sb, rec := storedOf(b, removed, now, keep)
	data, err := json.Marshal(sb)
	if err != nil {
		t.Fatal(err)
	}
	rec.Data = data
	return rec
}

// TestStoredBindingFormats: a binding written in format 2 reads back as
// it was; the same binding stored as JSON by an earlier paysip reads
// back the same; tombstones too, in both.
func TestStoredBindingFormats(t *testing.T) {
	now := time.Date(2026, 11, 26, 6, 0, 0, 123456789, time.UTC)
	for _, b := range []*Binding{
		{AOR: "sip:a@example.org", Contact: contact(t, `"A" <sip:a@192.0.2.1:5070;transport=tcp>;+sip.instance="<urn:uuid:1>";q=0.5`),
			Key: "inst:<urn:uuid:1>", Owner: "a", Expires: now.Add(time.Hour), CallID: "c@h", CSeq: 4294967295,
			Path: []string{"<sip:edge1;lr>", "<sip:edge2;lr>"}, Source: "192.0.2.1:5070", Transport: "TCP", Updated: now},
		{AOR: "sip:b@example.org", Contact: contact(t, "<sip:b@[2001:db8::1]>"), Key: "uri:sip:b@[2001:db8::1]:0", Updated: now.Add(-time.Minute)},
	} {
		for _, removed := range []bool{false, true} {
			rec, err := encodeBinding(b, removed, now, time.Minute)
			if err != nil || rec.Data[0] != storedFormat2 {
				t.Fatalf("%x %v", rec.Data, err)
			}
			old := jsonRecord(t, b, removed, now, time.Minute)
			if rec.AOR != old.AOR || rec.Key != old.Key || !rec.Expires.Equal(old.Expires) || !rec.Updated.Equal(old.Updated) {
				t.Fatalf("records differ: %+v, JSON %+v", rec, old)
			}
			got, gotRemoved, err := decodeBinding(rec)
			if err != nil || gotRemoved != removed {
				t.Fatalf("format 2: %v %v", gotRemoved, err)
			}
			fromJSON, jsonRemoved, err := decodeBinding(old)
			if err != nil || jsonRemoved != removed {
				t.Fatalf("JSON: %v %v", jsonRemoved, err)
			}
			if !reflect.DeepEqual(got, fromJSON) {
				t.Fatalf("format 2 reads %+v, JSON %+v", got, fromJSON)
			}
			if got.Contact.Value() != b.Contact.Value() || got.Key != b.Key || got.CSeq != b.CSeq || !reflect.DeepEqual(got.Path, b.Path) ||
				got.Expires != b.Expires.UTC() || removed && !got.Updated.Equal(now) || !removed && got.Updated != b.Updated.UTC() {
				t.Fatalf("read back %+v, wrote %+v", got, b)
			}
			if removed && (!removedAt(rec).Equal(now) || !removedAt(old).Equal(now)) {
				t.Fatalf("removed at %v / %v", removedAt(rec), removedAt(old))
			}
		}
	}
	// Truncated, extended or damaged format 2 is refused.
	good, _ := encodeBinding(&Binding{AOR: "sip:a@example.org", Contact: contact(t, "<sip:a@192.0.2.1>"), Key: "k", Updated: now}, false, now, time.Minute)
	for i := 1; i < len(good.Data); i++ {
		if _, _, err := decodeBinding(Record{AOR: good.AOR, Key: good.Key, Data: good.Data[:i]}); !errors.Is(err, errStored) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	for _, data := range [][]byte{append(append([]byte(nil), good.Data...), 0), {storedFormat2, 2}} {
		if _, _, err := decodeBinding(Record{AOR: good.AOR, Key: good.Key, Data: data}); !errors.Is(err, errStored) {
			t.Fatalf("%x: %v", data, err)
		}
	}
}

func BenchmarkEncodeBinding(b *testing.B) {
	now := time.Now()
	bd := &Binding{AOR: "sip:user1234@paysip.test", Contact: contact(b, "<sip:user1234@127.0.0.1:5061>"), Key: "uri:sip:user1234@127.0.0.1:5061",
		Owner: "user1234", Expires: now.Add(time.Hour), CallID: "1-1234@127.0.0.1", CSeq: 1, Source: "127.0.0.1:5061", Transport: "UDP", Updated: now}
	b.Run("format2", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encodeBinding(bd, false, now, time.Minute)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			jsonRecord(b, bd, false, now, time.Minute)
		}
	})
}
