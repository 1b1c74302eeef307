package rtcconn

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuNow is this process's CPU time (user + system).
func cpuNow(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkToneCalls holds calls of a caller and a tone payee, both in
// this process on loopback, and reports the CPU of one call's media
// (both sides: ICE, DTLS, SRTP, the tone, RTCP; no payments) per second of
// call, the audio frames the callers missed, and those the tone sent late
// (a tick or more) or skipped (too late). One op is 20 ms of the
// calls (one frame each).
func BenchmarkToneCalls(b *testing.B) {
	for _, n := range []int{100, 250} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			callers := make([]*Peer, n)
			for i := range callers {
				a, offer, err := NewOffer(ctx, Config{LoopbackOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				defer a.Close()
				p, answer, err := Answer(ctx, Config{LoopbackOnly: true, Audio: AudioTone}, offer)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				if err := a.SetAnswer(answer); err != nil {
					b.Fatal(err)
				}
				if _, err := a.Conn(ctx); err != nil {
					b.Fatal(err)
				}
				callers[i] = a
			}
			time.Sleep(time.Second) // every call's audio flowing
			rx0 := make([]int64, n)
			for i, a := range callers {
				rx0[i] = a.ReceivedPackets()
			}
			skipped0, late0 := float64(framesSkipped.Load()), float64(framesLate.Load())
			cpu0, start := cpuNow(b), time.Now()
			b.ResetTimer()
			for range b.N {
				time.Sleep(frameDur)
			}
			b.StopTimer()
			cpu, secs := cpuNow(b)-cpu0, time.Since(start).Seconds()
			var rx int64
			for i, a := range callers {
				rx += a.ReceivedPackets() - rx0[i]
			}
			want := secs / frameDur.Seconds() * float64(n)
			b.ReportMetric(100*cpu.Seconds()/secs/float64(n), "%cpu/call")
			// The CPU per frame received: the same cost per call, but not
			// lowered by frames a starved machine did not send.
			b.ReportMetric(float64(cpu.Microseconds())/float64(max(rx, 1)), "us/frame")
			b.ReportMetric(100*max(0, want-float64(rx)-float64(n))/want, "%missing")
			b.ReportMetric(100*(float64(framesSkipped.Load())-skipped0)/want, "%skipped")
			b.ReportMetric(100*(float64(framesLate.Load())-late0)/want, "%late")
		})
	}
}
