package bench

import (
	"context"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/rtcconn"
)

// dataChannelPair connects two WebRTC peers on loopback (the callee with
// audio as given) and returns both ends' DataChannel connections.
func dataChannelPair(tb testing.TB, audio string) (caller, callee agent.Conn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, offer, err := rtcconn.NewOffer(ctx, rtcconn.Config{LoopbackOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	b, answer, err := rtcconn.Answer(ctx, rtcconn.Config{LoopbackOnly: true, Audio: audio}, offer)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	if err := a.SetAnswer(answer); err != nil {
		tb.Fatal(err)
	}
	ca, err := a.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cb, err := b.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return ca, cb
}

// BenchmarkDataChannelRoundTrip is the transport alone under the payment
// round trip: a 250-byte message over a pion DataChannel on loopback and
// its echo back, one at a time (the callee sends a tone, as in a call).
func BenchmarkDataChannelRoundTrip(b *testing.B) {
	for _, audio := range []string{rtcconn.AudioNone, rtcconn.AudioTone} {
		b.Run("audio="+audio, func(b *testing.B) {
			ca, cb := dataChannelPair(b, audio)
			ctx := context.Background()
			go func() {
				for {
					m, err := cb.Recv(ctx)
					if err != nil {
						return
					}
					if cb.Send(ctx, m) != nil {
						return
					}
				}
			}()
			msg := make([]byte, 250)
			for b.Loop() {
				if err := ca.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := ca.Recv(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
