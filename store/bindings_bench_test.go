package store

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPutBindings writes behind batches of new bindings as a
// registrar does (one PutBindings per 20 ms window: 240 bindings at
// 12,000 REGISTERs/s), each batch durable, and reports the process's CPU
// time per binding (cpu-ns/binding: the writer's cost, the fsync's wait
// left out).
func BenchmarkPutBindings(b *testing.B) {
	for _, batch := range []int{1, 240} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			d, _ := open(b)
			data := make([]byte, 300) // a JSON binding's size
			for i := range data {
				data[i] = 'a' + byte(i%26)
			}
			exp := time.Now().Add(time.Hour)
			bs := make([]StoredBinding, batch)
			n := 0
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range bs {
					n++
					bs[j] = StoredBinding{AOR: fmt.Sprintf("sip:user%d@paysip.test", n), Key: `"" <sip:user@127.0.0.1:5060>`,
						Expires: exp, Data: data, Writer: "node-1"}
				}
				if err := d.PutBindings(ctx, bs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/binding")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/binding")
		})
	}
}

// cpuTime is the process's user and system CPU time, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
