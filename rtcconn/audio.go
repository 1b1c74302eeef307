package rtcconn

import (
	"math"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Audio modes of a Peer.
const (
	AudioNone = ""
	AudioTone = "tone" // a 440 Hz tone, G.711 PCMU
	AudioEcho = "echo" // the caller's own audio, sent back
)

var pcmu = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}

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
		frame := make([]byte, 160)
		for i := range frame {
			n := f*160 + i
			frame[i] = linearToULaw(int16(8000 * math.Sin(2*math.Pi*440*float64(n)/8000)))
		}
		frames[f] = frame
	}
	return frames
}

// startAudio adds the peer's outgoing audio (before the description is
// created) and counts what it receives.
func (p *Peer) startAudio(mode string) error {
	p.pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			p.received.Add(1)
			if p.echo != nil {
				p.echo.WriteRTP(pkt)
			}
		}
	})
	switch mode {
	case AudioTone:
		track, err := webrtc.NewTrackLocalStaticSample(pcmu, "audio", "paysip")
		if err != nil {
			return err
		}
		if _, err := p.pc.AddTrack(track); err != nil {
			return err
		}
		go func() {
			frames := toneFrames()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-p.closed:
					return
				case <-t.C:
					track.WriteSample(media.Sample{Data: frames[i%len(frames)], Duration: 20 * time.Millisecond})
				}
			}
		}()
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

// ReceivedPackets counts the RTP packets received (audio flows).
func (p *Peer) ReceivedPackets() int64 { return p.received.Load() }
