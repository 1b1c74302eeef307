package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkDurablePayments stores payee payments durably from many
// channels at once and reports payments/s. Each call returns only once its
// payment is committed with synchronous=FULL, as the ack requires.
func BenchmarkDurablePayments(b *testing.B) {
	for _, channels := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("channels=%d", channels), func(b *testing.B) {
			d, _ := open(b)
			benchPayments(b, d, channels)
		})
	}
}

// benchPayments stores b.N payee payments spread over channels new
// channels, each channel's from its own goroutine, and reports payments/s.
func benchPayments(b *testing.B, d *DB, channels int) {
	ids := make([]string, channels)
	for i := range ids {
		r := record(b, Payee, i)
		if err := d.Insert(ctx, r); err != nil {
			b.Fatal(err)
		}
		ids[i] = r.ID()
	}
	var stored atomic.Int64
	sig := make([]byte, 72)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/channels + 1
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= per; v++ {
				if err := d.PayeePayment(ctx, id, int64(v), sig); err != nil {
					b.Error(err)
					return
				}
				stored.Add(1)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(stored.Load())/b.Elapsed().Seconds(), "payments/s")
}
