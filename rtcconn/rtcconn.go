// Package rtcconn carries the payment protocol on a WebRTC DataChannel
// (label "paysip", protocol "paysip/1", reliable and ordered) negotiated
// in a SIP call's offer/answer, with pion/webrtc v4. SIP carries whole SDP,
// so ICE is gathered completely before the description is handed over.
// A Peer's Conn is an agent.Conn.
package rtcconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/paywire"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Config tunes the peer.
type Config struct {
	// LoopbackOnly gathers loopback candidates only (tests, one-host
	// demos): UDP4, no mDNS.
	LoopbackOnly bool
	// GatherTimeout bounds ICE gathering (default 5 s).
	GatherTimeout time.Duration
	// NoDataChannel offers audio only: the payment protocol then runs over
	// in-dialog SIP MESSAGE (package sipconn).
	NoDataChannel bool
	// Audio is what this side sends: AudioNone, AudioTone or AudioEcho.
	Audio string
	// Networks, when set, restricts ICE candidates to these networks
	// (UDP4, no mDNS): a deployment's own segment, or the test hosts.
	Networks []*net.IPNet
	// ICEServers are STUN (stun:host:port: learn the public address behind
	// a NAT) and TURN (turn:host:port?transport=udp: relay through it when
	// no direct path exists) servers, RFC 8445 / RFC 8656.
	ICEServers []webrtc.ICEServer
	// RelayOnly uses relayed candidates only: every packet goes through
	// the TURN server (hides the peers' addresses from each other; tests).
	RelayOnly bool
}

// Peer is one side of a call's WebRTC session.
type Peer struct {
	pc     *webrtc.PeerConnection
	mu     sync.Mutex
	dc     *webrtc.DataChannel
	open   chan struct{}
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	rx   rxCounter
	echo *webrtc.TrackLocalStaticRTP
	tone *toneTrack
}

func api(cfg Config) *webrtc.API {
	se := webrtc.SettingEngine{}
	// A paid call whose network is gone should end in seconds, not after
	// pion's defaults (25 s to failed, ~34 s seen across hosts): the payee's
	// watchdog hangs up a silent payer after its grace anyway. A link back
	// within 10 s resumes (tested across hosts with a 2 s cut).
	se.SetICETimeouts(4*time.Second, 10*time.Second, time.Second)
	switch {
	case len(cfg.Networks) > 0:
		se.SetIPFilter(func(ip net.IP) bool {
			for _, n := range cfg.Networks {
				if n.Contains(ip) {
					return true
				}
			}
			return false
		})
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	case cfg.LoopbackOnly:
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	m := &webrtc.MediaEngine{}
	m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0}, webrtc.RTPCodecTypeAudio)
	m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000, Channels: 1}, PayloadType: 8}, webrtc.RTPCodecTypeAudio)
	// Of pion's default interceptors, only the RTCP reports (RFC 3550 §6:
	// sender and receiver reports, which WebRTC requires, RFC 8834 §4.1).
	// NACK and TWCC serve video, and the stats interceptor (GetStats)
	// records every packet for figures nothing here reads.
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		panic(err) // registers two factories: cannot fail
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir))
}

func newPeer(cfg Config) (*Peer, error) {
	conf := webrtc.Configuration{ICEServers: cfg.ICEServers}
	if cfg.RelayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := api(cfg).NewPeerConnection(conf)
	if err != nil {
		return nil, err
	}
	p := &Peer{pc: pc, open: make(chan struct{}), in: make(chan []byte, 64), closed: make(chan struct{})}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			p.Close()
		}
	})
	return p, nil
}

func (p *Peer) attach(dc *webrtc.DataChannel) {
	p.mu.Lock()
	p.dc = dc
	p.mu.Unlock()
	dc.OnOpen(func() { close(p.open) })
	dc.OnClose(func() { p.Close() })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if len(m.Data) > paywire.MaxMessageSize {
			return
		}
		select {
		case p.in <- m.Data:
		case <-p.closed:
		}
	})
}

// gather sets the local description and waits for ICE gathering to end.
func (p *Peer) gather(ctx context.Context, desc webrtc.SessionDescription, timeout time.Duration) ([]byte, error) {
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(desc); err != nil {
		return nil, err
	}
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	select {
	case <-done:
	case <-time.After(timeout):
		return nil, errors.New("ICE gathering did not complete")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []byte(p.pc.LocalDescription().SDP), nil
}

// NewOffer makes the caller's side: an audio stream (PCMU/PCMA) and the
// paysip DataChannel, created before the offer so the SDP has its
// m=application line. It returns the complete SDP offer.
func NewOffer(ctx context.Context, cfg Config) (*Peer, []byte, error) {
	p, err := newPeer(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Audio == AudioNone {
		if _, err := p.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			p.Close()
			return nil, nil, err
		}
	}
	if err := p.startAudio(cfg.Audio); err != nil {
		p.Close()
		return nil, nil, err
	}
	if !cfg.NoDataChannel {
		ordered := true
		proto := paywire.DataChannelProtocol
		dc, err := p.pc.CreateDataChannel(paywire.DataChannelLabel, &webrtc.DataChannelInit{Ordered: &ordered, Protocol: &proto})
		if err != nil {
			p.Close()
			return nil, nil, err
		}
		p.attach(dc)
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	sdp, err := p.gather(ctx, offer, cfg.GatherTimeout)
	if err != nil {
		p.Close()
	}
	return p, sdp, err
}

// SetAnswer applies the callee's SDP answer (from the 200 OK).
func (p *Peer) SetAnswer(sdp []byte) error {
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(sdp)})
}

// Answer makes the callee's side from an SDP offer and returns the
// complete SDP answer. It refuses an offer without the paysip DataChannel
// (no m=application line).
func Answer(ctx context.Context, cfg Config, offer []byte) (*Peer, []byte, error) {
	p, err := newPeer(cfg)
	if err != nil {
		return nil, nil, err
	}
	p.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() == paywire.DataChannelLabel {
			p.attach(dc)
		}
	})
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("SDP offer: %w", err)
	}
	if err := p.startAudio(cfg.Audio); err != nil {
		p.Close()
		return nil, nil, err
	}
	ans, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	sdp, err := p.gather(ctx, ans, cfg.GatherTimeout)
	if err != nil {
		p.Close()
	}
	return p, sdp, err
}

// Conn waits for the DataChannel to open and returns it as an agent.Conn.
func (p *Peer) Conn(ctx context.Context) (agent.Conn, error) {
	select {
	case <-p.open:
		return p, nil
	case <-p.closed:
		return nil, agent.ErrConnClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send implements agent.Conn.
func (p *Peer) Send(ctx context.Context, msg []byte) error {
	p.mu.Lock()
	dc := p.dc
	p.mu.Unlock()
	if dc == nil {
		return agent.ErrConnClosed
	}
	if err := dc.Send(msg); err != nil {
		return fmt.Errorf("%w: %v", agent.ErrConnClosed, err)
	}
	return nil
}

// Recv implements agent.Conn.
func (p *Peer) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-p.in:
		return m, nil
	case <-p.closed:
		select {
		case m := <-p.in:
			return m, nil
		default:
		}
		return nil, agent.ErrConnClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close ends the WebRTC session, after what was sent on the DataChannel
// has left (the last protocol message, such as closed, must reach the
// peer). Calling it again is harmless.
func (p *Peer) Close() error {
	var err error
	p.once.Do(func() {
		p.mu.Lock()
		dc := p.dc
		p.mu.Unlock()
		if dc != nil && dc.ReadyState() == webrtc.DataChannelStateOpen {
			deadline := time.Now().Add(2 * time.Second)
			for dc.BufferedAmount() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			// Handed to SCTP is not yet delivered: a moment for it to go.
			time.Sleep(100 * time.Millisecond)
		}
		close(p.closed)
		if p.tone != nil {
			clock.remove(p.tone)
		}
		err = p.pc.Close()
	})
	return err
}
