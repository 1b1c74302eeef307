package rtcconn

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Audio modes of a Peer.
const (
	AudioNone = ""
	AudioTone = "tone" // a 440 Hz tone, G.711 PCMU
	AudioEcho = "echo" // the caller's own audio, sent back
)

var pcmu = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}

const (
	// frameDur is one audio frame: 20 ms, 160 samples at 8 kHz (RFC 3551
	// §4.5.14: PCMU's default packetization interval), so the RTP
	// timestamp advances by frameSamples per frame (RFC 3550 §5.1).
	frameDur     = 20 * time.Millisecond
	frameSamples = 160
	// maxLate is how many frames a tone track that fell behind still
	// sends late (100 ms of audio); older ones are skipped.
	maxLate = 5
)

// linearToULaw encodes one 16-bit sample in G.711 mu-law (ITU-T G.711).
func linearToULaw(sample int16) byte {
	const bias, clip = 0x84, 32635
	s := int(sample)
	sign := 0
	if s < 0 {
		s, sign = -s, 0x80
	}
	if s > clip {
		s = clip
	}
	s += bias
	exp := 7
	for mask := 0x4000; s&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (s >> (exp + 3)) & 0x0F
	return ^byte(sign | exp<<4 | mant)
}

// toneFrames returns one second of a 440 Hz tone as 20 ms PCMU frames.
func toneFrames() [][]byte {
	frames := make([][]byte, 50)
	for f := range frames {
		frame := make([]byte, frameSamples)
		for i := range frame {
			n := f*frameSamples + i
			frame[i] = linearToULaw(int16(8000 * math.Sin(2*math.Pi*440*float64(n)/8000)))
		}
		frames[f] = frame
	}
	return frames
}

// tone is the frames every tone track sends (read only).
var tone = sync.OnceValue(toneFrames)

// toneTrack is one peer's outgoing tone: its RTP stream's state, written
// only by the audio clock.
type toneTrack struct {
	track *webrtc.TrackLocalStaticRTP
	start time.Time // when frame 0 was due
	next  int64     // the next frame to send
	pkt   rtp.Packet
	idx   int // in audioClock.tracks
}

func newToneTrack(track *webrtc.TrackLocalStaticRTP, start time.Time) *toneTrack {
	var b [6]byte
	rand.Read(b[:])
	// RFC 3550 §5.1: the first sequence number and timestamp are random.
	// The SSRC is the track binding's (pion sets it on each write).
	return &toneTrack{track: track, start: start, pkt: rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    0, // PCMU, RFC 3551 §6
		SequenceNumber: binary.BigEndian.Uint16(b[:2]),
		Timestamp:      binary.BigEndian.Uint32(b[2:]),
		Marker:         true, // first packet of a talkspurt (RFC 3551 §4.1)
	}}}
}

// send writes the frames due at now: those missed by a late clock are sent
// late, up to maxLate of them; older ones are skipped (their timestamps
// pass, their sequence numbers are not used: RFC 3550 §5.1). It returns
// the frames sent, sent late, and skipped.
func (t *toneTrack) send(now time.Time) (sent, late, skipped int64) {
	frames := tone()
	due := int64(now.Sub(t.start)/frameDur) + 1 // frames 0..due-1 are due
	if behind := due - t.next; behind > maxLate {
		skipped = behind - maxLate
		t.next += skipped
		t.pkt.Timestamp += uint32(skipped * frameSamples)
		t.pkt.Marker = true // audio resumes after a gap
	}
	for ; t.next < due; t.next++ {
		t.pkt.Payload = frames[t.next%int64(len(frames))]
		t.track.WriteRTP(&t.pkt) // no binding yet, or closed: nothing sent
		t.pkt.SequenceNumber++
		t.pkt.Timestamp += frameSamples
		t.pkt.Marker = false
		sent++
		if t.next < due-1 {
			late++
		}
	}
	return sent, late, skipped
}

// audioClock sends every tone track of the process by one clock: one
// goroutine and one timer for all of them (a ticker per track loses the
// frames of the ticks its goroutine misses on a loaded machine). Each tick,
// the tracks are split among one sender per CPU.
type audioClock struct {
	mu      sync.Mutex
	tracks  []*toneTrack
	running bool
}

var clock audioClock

func (c *audioClock) add(t *toneTrack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t.idx = len(c.tracks)
	c.tracks = append(c.tracks, t)
	if !c.running {
		c.running = true
		go c.run()
	}
}

func (c *audioClock) remove(t *toneTrack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.idx < 0 || t.idx >= len(c.tracks) || c.tracks[t.idx] != t {
		return
	}
	last := c.tracks[len(c.tracks)-1]
	c.tracks[t.idx], last.idx = last, t.idx
	c.tracks[len(c.tracks)-1] = nil
	c.tracks = c.tracks[:len(c.tracks)-1]
	t.idx = -1
}

// run ticks until no track is left. The timer aims at the next 20 ms
// boundary of the clock's own start, so the ticks do not drift.
func (c *audioClock) run() {
	epoch := time.Now()
	timer := time.NewTimer(frameDur)
	defer timer.Stop()
	var snap []*toneTrack
	var wg sync.WaitGroup
	for k := int64(1); ; {
		<-timer.C
		c.mu.Lock()
		if len(c.tracks) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		snap = append(snap[:0], c.tracks...)
		c.mu.Unlock()
		now := time.Now()
		workers := min(runtime.GOMAXPROCS(0), (len(snap)+63)/64)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var sent, late, skipped int64
				for i := w; i < len(snap); i += workers {
					s, l, sk := snap[i].send(now)
					sent, late, skipped = sent+s, late+l, skipped+sk
				}
				framesSent.Add(sent)
				framesLate.Add(late)
				framesSkipped.Add(skipped)
			}()
		}
		wg.Wait()
		clear(snap)
		// The next tick is the first 20 ms boundary after now.
		k = max(k+1, int64(time.Since(epoch)/frameDur)+1)
		timer.Reset(time.Until(epoch.Add(time.Duration(k) * frameDur)))
	}
}

// startAudio adds the peer's outgoing audio (before the description is
// created) and counts what it receives.
func (p *Peer) startAudio(mode string) error {
	p.pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		// One buffer per track, reused: the packet is counted from its
		// header and, for the echo, written back as it came.
		buf := make([]byte, 1500)
		for {
			n, _, err := remote.Read(buf)
			if err != nil {
				return
			}
			if !p.rx.add(buf[:n]) {
				continue
			}
			if p.echo != nil {
				p.echo.Write(buf[:n])
			}
		}
	})
	switch mode {
	case AudioTone:
		track, err := webrtc.NewTrackLocalStaticRTP(pcmu, "audio", "paysip")
		if err != nil {
			return err
		}
		if _, err := p.pc.AddTrack(track); err != nil {
			return err
		}
		p.tone = newToneTrack(track, time.Now())
		clock.add(p.tone)
	case AudioEcho:
		track, err := webrtc.NewTrackLocalStaticRTP(pcmu, "audio", "paysip-echo")
		if err != nil {
			return err
		}
		if _, err := p.pc.AddTrack(track); err != nil {
			return err
		}
		p.echo = track
	}
	return nil
}

// rxCounter counts the distinct RTP packets received, by their sequence
// numbers (RFC 3550 §A.1): a duplicate is not counted twice, and a gap in
// the numbers is packets lost on the way.
type rxCounter struct {
	mu       sync.Mutex
	started  bool
	highest  uint64 // extended sequence number (cycles << 16 | seq)
	seen     uint64 // bit i: highest-i received
	received int64
}

// add counts one packet; it reports false for a packet that is not RTP
// version 2 or was already counted.
func (c *rxCounter) add(b []byte) bool {
	if len(b) < 12 || b[0]>>6 != 2 {
		return false
	}
	seq := binary.BigEndian.Uint16(b[2:4])
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		c.started, c.highest, c.seen, c.received = true, uint64(seq), 1, 1
		return true
	}
	// The extended number nearest the highest (RFC 3550 §A.1).
	delta := int64(int16(seq - uint16(c.highest)))
	ext := int64(c.highest) + delta
	switch {
	case ext < 0:
		return false
	case delta > 0:
		if delta >= 64 {
			c.seen = 0
		} else {
			c.seen <<= uint(delta)
		}
		c.seen |= 1
		c.highest = uint64(ext)
	case delta > -64:
		bit := uint64(1) << uint(-delta)
		if c.seen&bit != 0 {
			return false
		}
		c.seen |= bit
	default:
		return false // too old to tell from a duplicate
	}
	c.received++
	return true
}

func (c *rxCounter) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.received
}

// ReceivedPackets counts the distinct RTP packets received (audio flows),
// by sequence number.
func (p *Peer) ReceivedPackets() int64 { return p.rx.count() }
