package store

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPutBindings writes behind batches of new bindings as a
// registrar does (one PutBindings per 20 ms window: 240 bindings at
// 12,000 REGISTERs/s), each batch durable, and reports the process's CPU
// time per binding (cpu-ns/binding: the writer's cost, the fsync's wait
// left out).
//
// random: the batches' addresses are spread over a table of 100,000
// bindings already (registrations arrive in no order of address), not
// appended after the last.
func BenchmarkPutBindings(b *testing.B) {
	for _, c := range []struct {
		batch  int
		random bool
	}{{1, false}, {240, false}, {240, true}} {
		name := fmt.Sprintf("batch=%d", c.batch)
		if c.random {
			name += "/random"
		}
		batch := c.batch
		b.Run(name, func(b *testing.B) {
			d, _ := open(b)
			data := make([]byte, 300) // a JSON binding's size
			for i := range data {
				data[i] = 'a' + byte(i%26)
			}
			exp := time.Now().Add(time.Hour)
			bs := make([]StoredBinding, batch)
			n := 0
			aor := func(n int) string { return fmt.Sprintf("sip:user%d@paysip.test", n) }
			if c.random {
				fill := make([]StoredBinding, 0, 1000)
				for i := range 100_000 {
					fill = append(fill, StoredBinding{AOR: aor(i * 7919 % 100_000 * 1000), Key: "k", Expires: exp, Data: data, Writer: "node-1"})
					if len(fill) == cap(fill) {
						if err := d.PutBindings(ctx, fill); err != nil {
							b.Fatal(err)
						}
						fill = fill[:0]
					}
				}
				rng := rand.New(rand.NewPCG(1, 2))
				aor = func(int) string { return fmt.Sprintf("sip:user%d@paysip.test", rng.IntN(100_000_000)) }
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range bs {
					n++
					bs[j] = StoredBinding{AOR: aor(n), Key: `"" <sip:user@127.0.0.1:5060>`,
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
