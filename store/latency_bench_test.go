package store

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkPaymentLatency times lone payee payments, gap apart, as a
// lightly loaded payee stores them (past the WAL's first checkpoint, as
// in a payee that has run a while: commits overwrite its pages instead of
// growing the file; "new": from a new store): each write finds the store
// idle (its goroutines parked), so the figure is an ack's wait for its
// own commit, hand-offs and fsync included. It reports the median and 99th percentile
// in microseconds.
func BenchmarkPaymentLatency(b *testing.B) {
	for _, gap := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond} {
		b.Run(fmt.Sprintf("gap=%v", gap), func(b *testing.B) { benchLatency(b, gap, 1100) })
	}
	// A new store (a payee's first payments): its WAL grows by a page
	// with each commit until the first checkpoint lets it wrap.
	b.Run("new/gap=10ms", func(b *testing.B) { benchLatency(b, 10*time.Millisecond, 0) })
}

// benchLatency times lone payments gap apart, after warm ones.
func benchLatency(b *testing.B, gap time.Duration, warm int) {
	d, _ := open(b)
	r := record(b, Payee, 1)
	if err := d.Insert(ctx, r); err != nil {
		b.Fatal(err)
	}
	id, sig := r.ID(), make([]byte, 72)
	v := int64(0)
	for range warm {
		v++
		if err := d.PayeePayment(ctx, id, v, sig); err != nil {
			b.Fatal(err)
		}
	}
	us := make([]float64, 0, b.N)
	for b.Loop() {
		if gap > 0 {
			b.StopTimer()
			time.Sleep(gap)
			b.StartTimer()
		}
		v++
		start := time.Now()
		if err := d.PayeePayment(ctx, id, v, sig); err != nil {
			b.Fatal(err)
		}
		us = append(us, float64(time.Since(start).Nanoseconds())/1e3)
	}
	slices.Sort(us)
	b.ReportMetric(us[len(us)/2], "p50-us")
	b.ReportMetric(us[len(us)*99/100], "p99-us")
}
