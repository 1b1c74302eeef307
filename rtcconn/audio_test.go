package rtcconn

import (
	"context"
	"testing"
	"time"
)

func TestULaw(t *testing.T) {
	// G.711 reference points.
	for _, c := range []struct {
		in   int16
		want byte
	}{{0, 0xFF}, {32767, 0x80}, {-32768, 0x00}, {-1, 0x7F}} {
		if got := linearToULaw(c.in); got != c.want {
			t.Errorf("mu-law(%d) = %#x, want %#x", c.in, got, c.want)
		}
	}
}

// TestAudioServices: a payee's tone reaches the caller; with echo, the
// caller's own tone comes back.
func TestAudioServices(t *testing.T) {
	for _, c := range []struct{ caller, payee string }{{AudioNone, AudioTone}, {AudioTone, AudioEcho}} {
		t.Run(c.payee, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a, offer, err := NewOffer(ctx, Config{LoopbackOnly: true, Audio: c.caller})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, answer, err := Answer(ctx, Config{LoopbackOnly: true, Audio: c.payee}, offer)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := a.SetAnswer(answer); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for a.ReceivedPackets() < 25 && time.Now().Before(deadline) { // half a second of audio
				time.Sleep(50 * time.Millisecond)
			}
			if n := a.ReceivedPackets(); n < 25 {
				t.Fatalf("caller received %d audio packets from the %s service", n, c.payee)
			}
		})
	}
}
