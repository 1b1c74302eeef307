package sipserver

import (
	"testing"
	"time"
)

// TestSipDate: the Date value is the time's second in RFC 1123 GMT form,
// whatever the zone, and the one cached for a second is never served for
// another.
func TestSipDate(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 6, 30, 1, 900_000_000, time.FixedZone("X", 3600))
	for _, tm := range []time.Time{t0, t0.Add(50 * time.Millisecond), t0.Add(200 * time.Millisecond), t0.Add(-time.Second), t0} {
		if got, want := sipDate(tm), tm.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"); got != want {
			t.Fatalf("%v: %q, want %q", tm, got, want)
		}
	}
	if got := sipDate(t0); got != "Thu, 26 Nov 2026 05:30:01 GMT" {
		t.Fatal(got)
	}
}
