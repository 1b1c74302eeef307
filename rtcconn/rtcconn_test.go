package rtcconn_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/calltest"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipua"
)

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

// TestDataChannelAlone: offer/answer between two peers on loopback, the
// DataChannel opens, messages go both ways.
func TestDataChannelAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := rtcconn.Config{LoopbackOnly: true}
	a, offer, err := rtcconn.NewOffer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !strings.Contains(string(offer), "m=application") || !strings.Contains(string(offer), "m=audio") || !strings.Contains(string(offer), "a=candidate") {
		t.Fatalf("offer lacks audio, DataChannel or candidates:\n%s", offer)
	}
	b, answer, err := rtcconn.Answer(ctx, cfg, offer)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	ca, err := a.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ca.Send(ctx, []byte("ping"))
	if m, err := cb.Recv(ctx); err != nil || string(m) != "ping" {
		t.Fatalf("%q %v", m, err)
	}
	cb.Send(ctx, []byte("pong"))
	if m, err := ca.Recv(ctx); err != nil || string(m) != "pong" {
		t.Fatalf("%q %v", m, err)
	}
	a.Close()
	if _, err := cb.Recv(ctx); err == nil {
		t.Fatal("Recv after the peer closed")
	}
}

// TestPaidCallOverDataChannel: the INVITE carries the SDP offer with audio
// and the paysip DataChannel through the proxy; the 200 OK the answer;
// the payment protocol runs on the DataChannel against a real regtest
// node; the payee settles on close.
func TestPaidCallOverDataChannel(t *testing.T) {
	w := calltest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	payer, payee := w.Payer, w.Payee
	rtc := rtcconn.Config{LoopbackOnly: true}
	tutor := w.Tutor(t, ctx)
	served := make(chan *agent.PayeeResult, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		peer, answer, err := rtcconn.Answer(ctx, rtc, ic.Request.Body())
		if err != nil {
			ic.Reject(488, "Not Acceptable Here")
			return
		}
		if _, err := ic.Answer(answer); err != nil {
			peer.Close()
			return
		}
		go func() {
			defer peer.Close()
			conn, err := peer.Conn(ctx)
			if err != nil {
				served <- nil
				return
			}
			res, _ := payee.Serve(ctx, conn, "caller")
			served <- res
		}()
	})
	peer, offer, err := rtcconn.NewOffer(ctx, rtc)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	call, err := w.UA(t, "caller").Call(ctx, calltest.TutorURI(), offer, sip.NewHeader("Supported", "paysip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.SetAnswer(call.RemoteSDP); err != nil {
		t.Fatal(err)
	}
	conn, err := peer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := payer.Open(ctx, conn, "sip:tutor@paysip.test")
	if err != nil {
		t.Fatal(err)
	}
	for sec := int64(1); sec <= 5; sec++ {
		owed, _ := channel.Owed(60_000, sec)
		if err := s.Pay(ctx, owed); err != nil {
			t.Fatalf("second %d: %v", sec, err)
		}
	}
	closed, err := s.Close(ctx, "hangup")
	if err != nil {
		t.Fatal(err)
	}
	call.Hangup(ctx)
	if res := <-served; res == nil || res.PaidSat != 5000 || res.SettlementTxID != closed.SettlementTxID {
		t.Fatalf("payee %+v, payer %+v", res, closed)
	}
}
