package rtcconn_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
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
	env := regtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := sipserver.New(sipserver.Config{Domain: "paysip.test", SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Open: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	<-srv.Ready()
	proxy := fmt.Sprintf("127.0.0.1:%d", srv.SIPPort())
	openStore := func(name string) *store.DB {
		db, err := store.Open(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	payerW, _ := env.NewWallet("payer", "")
	payeeW, _ := env.NewWallet("payee", "")
	a, _ := payerW.NewAddress()
	env.Fund(a, 2_000_000)
	payer := &agent.Payer{Wallet: payerW, Chain: env.Chain, Store: openStore("payer.db"), CapacitySat: 500_000}
	payee := &agent.Payee{Wallet: payeeW, Chain: env.Chain, Store: openStore("payee.db"), PriceSatPerMin: 60_000, Poll: 20 * time.Millisecond}
	rtc := rtcconn.Config{LoopbackOnly: true}

	tutor, _ := sipua.New(sipua.Config{AOR: "sip:tutor@paysip.test", Proxy: proxy})
	defer tutor.Close()
	if err := tutor.KeepRegistered(ctx, 300, &sipua.Offer{PriceSatPerMin: 60_000}); err != nil {
		t.Fatal(err)
	}
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
	caller, _ := sipua.New(sipua.Config{AOR: "sip:caller@paysip.test", Proxy: proxy})
	defer caller.Close()
	peer, offer, err := rtcconn.NewOffer(ctx, rtc)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var to sip.Uri
	sip.ParseUri("sip:tutor@paysip.test", &to)
	call, err := caller.Call(ctx, to, offer, sip.NewHeader("Supported", "paysip"))
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
