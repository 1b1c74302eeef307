package paidcall_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/internal/calltest"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipua"
)

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

func TestTransportOf(t *testing.T) {
	dc := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
	audio := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n"
	// A DataChannel named only in an attribute is not an m=application line.
	fake := audio + "a=x-note:m=application webrtc-datachannel\r\n"
	for sdp, want := range map[string]string{dc: sipext.TransportDataChannel, audio: sipext.TransportMessage, fake: sipext.TransportMessage, "garbage": sipext.TransportMessage} {
		if got := paidcall.TransportOf([]byte(sdp)); got != want {
			t.Errorf("TransportOf(%.30q) = %s, want %s", sdp, got, want)
		}
	}
}

// TestPaidCall: the caller dials through the proxy, the payee answers
// with ServeCall, over each transport; the caller pays a 3-second call
// (fast ticks) in a pool sized to it and closes; the payee's settlement
// pays what the caller's meter paid.
func TestPaidCall(t *testing.T) {
	for _, transport := range []string{sipext.TransportDataChannel, sipext.TransportMessage} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			w := calltest.New(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			tick := 100 * time.Millisecond
			w.Payee.Metering = &meter.Payee{PriceSatPerMin: calltest.Price, Tick: tick, Grace: 10 * tick}
			rtc := rtcconn.Config{LoopbackOnly: true}
			served := make(chan *agent.PayeeResult, 1)
			w.Tutor(t, ctx).OnInvite(func(ic *sipua.IncomingCall) {
				if err := paidcall.ServeCall(ctx, ic, rtc, w.Payee, nil, func(_ *paidcall.Leg, res *agent.PayeeResult, err error) {
					if !paidcall.CleanEnd(err) {
						t.Errorf("payee: %v", err)
					}
					served <- res
				}); err != nil {
					t.Error(err)
				}
			})
			leg, err := paidcall.Dial(ctx, w.UA(t, "caller"), calltest.TutorURI(), rtc, transport)
			if err != nil {
				t.Fatal(err)
			}
			defer leg.Hangup(ctx, "")
			if leg.Transport != transport {
				t.Fatalf("transport %s", leg.Transport)
			}
			caller := &paidcall.Caller{Payer: w.Payer}
			res, err := caller.Pay(ctx, leg.Conn, tutorAOR, paidcall.Plan{PriceSatPerMin: calltest.Price, Seconds: 3, Tick: tick, Close: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.End != paidcall.EndLength || res.PaidSat != 3000 || res.Payments != 3 || res.Closed == nil || res.MinPaymentSat != agent.DefaultMinPaymentSat {
				t.Fatalf("result %+v", res)
			}
			if res.Pool.CallSat != 3000 || res.CapacitySat < res.Pool.CallSat {
				t.Fatalf("pool %+v, capacity %d", res.Pool, res.CapacitySat)
			}
			if got := <-served; got == nil || got.PaidSat != 3000 || got.SettlementTxID != res.Closed.SettlementTxID {
				t.Fatalf("payee %+v, caller %+v", got, res.Closed)
			}
		})
	}
}

// TestLatePayerHungUpWithReason: a caller that stops paying is hung up by
// the payee with Reason: SIP;cause=402;text="payment late".
func TestLatePayerHungUpWithReason(t *testing.T) {
	t.Parallel()
	w := calltest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := 100 * time.Millisecond
	w.Payee.Metering = &meter.Payee{PriceSatPerMin: calltest.Price, Tick: tick, Grace: 2 * tick}
	rtc := rtcconn.Config{LoopbackOnly: true}
	w.Tutor(t, ctx).OnInvite(func(ic *sipua.IncomingCall) {
		paidcall.ServeCall(ctx, ic, rtc, w.Payee, nil, nil)
	})
	leg, err := paidcall.Dial(ctx, w.UA(t, "caller"), calltest.TutorURI(), rtc, sipext.TransportMessage)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Hangup(ctx, "")
	w.Payer.MaxPriceSatPerMin = calltest.Price
	s, err := w.Payer.Open(ctx, leg.Conn, tutorAOR)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Pay(ctx, 1000); err != nil { // one second, then nothing
		t.Fatal(err)
	}
	select {
	case <-leg.Call.Done():
	case <-ctx.Done():
		t.Fatal("the payee never hung up")
	}
	if r := leg.Call.HangupReason(); r != sipext.PaymentLateReason {
		t.Fatalf("BYE reason %q", r)
	}
}

const tutorAOR = "sip:tutor@" + calltest.Domain
