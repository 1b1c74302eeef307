package rtcconn

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
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

// TestToneTrackByClock: a tone track sends the frames due by its clock, a
// late tick's too (late, not lost), up to maxLate; older ones are skipped,
// their timestamps passed and their sequence numbers not used.
func TestToneTrackByClock(t *testing.T) {
	track, err := webrtc.NewTrackLocalStaticRTP(pcmu, "audio", "test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tt := newToneTrack(track, start) // not bound: the writes go nowhere
	seq0, ts0 := tt.pkt.SequenceNumber, tt.pkt.Timestamp
	if !tt.pkt.Marker || tt.pkt.Version != 2 || tt.pkt.PayloadType != 0 {
		t.Fatalf("first packet header %+v", tt.pkt.Header)
	}
	check := func(at time.Duration, sent, late, skipped, next int64) {
		t.Helper()
		s, l, k := tt.send(start.Add(at))
		if s != sent || l != late || k != skipped || tt.next != next {
			t.Fatalf("at %v: sent %d late %d skipped %d next %d, want %d %d %d %d", at, s, l, k, tt.next, sent, late, skipped, next)
		}
		if got, want := tt.pkt.Timestamp-ts0, uint32(next*frameSamples); got != want {
			t.Fatalf("at %v: timestamp advanced %d, want %d", at, got, want)
		}
	}
	check(0, 1, 0, 0, 1)                   // frame 0
	check(10*time.Millisecond, 0, 0, 0, 1) // nothing new due
	check(20*time.Millisecond, 1, 0, 0, 2)
	if tt.pkt.Marker {
		t.Fatal("marker set after the first packet")
	}
	check(99*time.Millisecond, 3, 2, 0, 5)       // two ticks missed: sent late
	check(1000*time.Millisecond, 5, 4, 46-5, 51) // far behind: the last 100 ms sent
	if got := tt.pkt.SequenceNumber - seq0; got != 1+1+3+5 {
		t.Fatalf("sequence advanced %d, want one per frame sent (10)", got)
	}
}

func TestRxCounter(t *testing.T) {
	pkt := func(seq uint16) []byte {
		b := make([]byte, 12)
		b[0] = 0x80
		binary.BigEndian.PutUint16(b[2:], seq)
		return b
	}
	var c rxCounter
	for _, s := range []struct {
		seq  uint16
		want bool
	}{
		{65530, true}, {65531, true}, {65531, false}, {65533, true}, {65532, true}, // reordered
		{65535, true}, {0, true}, {1, true}, {0, false}, {65534, true}, // across the wrap
		{200, true}, {100, false}, // too old to tell
	} {
		if got := c.add(pkt(s.seq)); got != s.want {
			t.Fatalf("seq %d counted %v, want %v", s.seq, got, s.want)
		}
	}
	if c.count() != 9 {
		t.Fatalf("counted %d, want 9", c.count())
	}
	if c.add([]byte{0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}) || c.add([]byte{0x80}) {
		t.Fatal("counted a packet that is not RTP v2")
	}
}

// TestToneRTP: the tone's packets as the caller receives them: PCMU, 160
// bytes, sequence numbers one apart and timestamps 160 apart (RFC 3550
// §5.1, RFC 3551 §4.5.14), one SSRC, the marker on the first only.
func TestToneRTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, offer, err := NewOffer(ctx, Config{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	pkts := make(chan *rtp.Packet, 100)
	a.pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			select {
			case pkts <- p:
			default:
				return
			}
		}
	})
	b, answer, err := Answer(ctx, Config{LoopbackOnly: true, Audio: AudioTone}, offer)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	var prev *rtp.Packet
	for i := range 50 {
		var p *rtp.Packet
		select {
		case p = <-pkts:
		case <-ctx.Done():
			t.Fatalf("%d packets received", i)
		}
		if p.PayloadType != 0 || len(p.Payload) != frameSamples {
			t.Fatalf("packet %d: payload type %d, %d bytes", i, p.PayloadType, len(p.Payload))
		}
		if i == 0 {
			// The first frames may go before DTLS ends (nowhere), so
			// the first one received need not be the first sent.
			prev = p
			continue
		}
		if p.Marker || p.SSRC != prev.SSRC || p.SequenceNumber != prev.SequenceNumber+1 || p.Timestamp != prev.Timestamp+frameSamples {
			t.Fatalf("packet %d: %+v after %+v", i, p.Header, prev.Header)
		}
		prev = p
	}
}
