//go:build !js

package paidcall

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipconn"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipua"
	"github.com/pion/sdp/v3"
)

// Leg is one side of a call carrying a paid call: the SIP dialog, the
// WebRTC session (audio, and the DataChannel when chosen), and the payment
// protocol's connection on the chosen transport.
type Leg struct {
	Call      *sipua.Call
	Peer      *rtcconn.Peer
	Conn      agent.Conn
	Transport string // sipext.TransportDataChannel or sipext.TransportMessage
}

// PaymentRequiredError is a 402 answer: the address is priced and the
// call did not say it can pay, or a proxy asks for payment; Terms are what
// its Paysip-Terms header says.
type PaymentRequiredError struct {
	Terms sipext.Terms
	Err   error // the header could not be read
}

func (e *PaymentRequiredError) Error() string {
	if e.Err != nil {
		return "402 Payment Required: " + e.Err.Error()
	}
	return "402 Payment Required: " + e.Terms.String()
}

// Dial calls to through ua with a WebRTC offer (audio, and the paysip
// DataChannel unless transport is sipext.TransportMessage), saying it can
// pay ("Supported: paysip"), and returns the answered leg with its payment
// connection open.
func Dial(ctx context.Context, ua *sipua.UA, to sip.Uri, rtc rtcconn.Config, transport string) (*Leg, error) {
	rtc.NoDataChannel = transport == sipext.TransportMessage
	peer, offer, err := rtcconn.NewOffer(ctx, rtc)
	if err != nil {
		return nil, err
	}
	call, err := ua.Call(ctx, to, offer, sip.NewHeader("Supported", sipext.OptionTag))
	var st *sipua.StatusError
	if errors.As(err, &st) {
		if terms, ok, terr := st.PaymentRequired(); ok {
			err = &PaymentRequiredError{Terms: terms, Err: terr}
		}
	}
	if err != nil {
		peer.Close()
		return nil, fmt.Errorf("calling %s: %w", to.String(), err)
	}
	leg := &Leg{Call: call, Peer: peer, Transport: sipext.TransportMessage}
	if err := peer.SetAnswer(call.RemoteSDP); err != nil {
		leg.Hangup(ctx, "")
		return nil, err
	}
	if rtc.NoDataChannel {
		leg.Conn = sipconn.New(call)
		return leg, nil
	}
	leg.Transport = sipext.TransportDataChannel
	if leg.Conn, err = peer.Conn(ctx); err != nil {
		leg.Hangup(ctx, "")
		return nil, fmt.Errorf("DataChannel: %w", err)
	}
	return leg, nil
}

// ErrBadOffer: an INVITE whose SDP cannot be answered (refused with 488).
var ErrBadOffer = errors.New("SDP offer not acceptable")

// Answer answers an incoming call (inside ua's OnInvite handler, which it
// does not hold up) with a WebRTC answer. The leg's payment connection is
// set for the MESSAGE transport; a DataChannel opens later (Open). A bad
// offer is refused with 488.
func Answer(ctx context.Context, ic *sipua.IncomingCall, rtc rtcconn.Config) (*Leg, error) {
	offer := ic.Request.Body()
	peer, answer, err := rtcconn.Answer(ctx, rtc, offer)
	if err != nil {
		ic.Reject(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return nil, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	call, err := ic.Answer(answer)
	if err != nil {
		peer.Close()
		return nil, err
	}
	leg := &Leg{Call: call, Peer: peer, Transport: TransportOf(offer)}
	if leg.Transport == sipext.TransportMessage {
		leg.Conn = sipconn.New(call)
	}
	return leg, nil
}

// Open waits for the leg's payment connection (the DataChannel of an
// answered call); the leg is hung up if it does not open.
func (l *Leg) Open(ctx context.Context) error {
	if l.Conn != nil {
		return nil
	}
	c, err := l.Peer.Conn(ctx)
	if err != nil {
		l.Hangup(ctx, "")
		return fmt.Errorf("DataChannel did not open: %w", err)
	}
	l.Conn = c
	return nil
}

// Hangup ends the leg: BYE (with a Reason header if reason is set), then
// the WebRTC session. Calling it again is harmless.
func (l *Leg) Hangup(ctx context.Context, reason string) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if l.Call != nil {
		select {
		case <-l.Call.Done():
		default:
			l.Call.HangupWithReason(hctx, reason)
		}
	}
	if l.Peer != nil {
		l.Peer.Close()
	}
}

// ServeCall answers ic (inside ua's OnInvite handler) and serves the paid
// call for payee in a goroutine until it ends, then hangs up (with the
// payment-late Reason when the payer fell behind) and tells onEnd.
// onAnswered, if set, is told of the leg as soon as it is answered.
func ServeCall(ctx context.Context, ic *sipua.IncomingCall, rtc rtcconn.Config, payee *agent.Payee, onAnswered func(*Leg), onEnd func(*Leg, *agent.PayeeResult, error)) error {
	leg, err := Answer(ctx, ic, rtc)
	if err != nil {
		return err
	}
	if onAnswered != nil {
		onAnswered(leg)
	}
	go func() {
		if err := leg.Open(ctx); err != nil {
			if onEnd != nil {
				onEnd(leg, nil, err)
			}
			return
		}
		res, reason, err := Serve(ctx, payee, leg.Conn, ic.Request.From().Address.String())
		leg.Hangup(ctx, reason)
		if onEnd != nil {
			onEnd(leg, res, err)
		}
	}()
	return nil
}

// TransportOf reads which transport an SDP offer chose for the payment
// protocol: a DataChannel when it has an m=application line for one
// (RFC 8841: "UDP/DTLS/SCTP webrtc-datachannel"), in-dialog SIP MESSAGE
// otherwise. An SDP that does not parse gives the MESSAGE transport (the
// media layer refuses it on its own).
func TransportOf(offer []byte) string {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(string(offer)); err != nil {
		return sipext.TransportMessage
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "application" || m.MediaName.Port.Value == 0 {
			continue
		}
		for _, f := range m.MediaName.Formats {
			if f == "webrtc-datachannel" {
				return sipext.TransportDataChannel
			}
		}
	}
	return sipext.TransportMessage
}
