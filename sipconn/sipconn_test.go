package sipconn_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/sipconn"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
)

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

// TestPaidCallOverMessage: a caller calls a priced address through the
// proxy; inside the call the payment protocol runs over in-dialog SIP
// MESSAGE on a real regtest node; the caller pays 5 seconds, hangs up
// with close, and the payee's settlement is on chain.
func TestPaidCallOverMessage(t *testing.T) {
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

	tutor, err := sipua.New(sipua.Config{AOR: "sip:tutor@paysip.test", Proxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	defer tutor.Close()
	if err := tutor.KeepRegistered(ctx, 300, &sipua.Offer{PriceSatPerMin: 60_000, Name: "Tutor"}); err != nil {
		t.Fatal(err)
	}
	served := make(chan *agent.PayeeResult, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		call, err := ic.Answer([]byte("v=0\r\n"))
		if err != nil {
			t.Error(err)
			return
		}
		go func() {
			res, _ := payee.Serve(ctx, sipconn.New(call), ic.Request.From().Address.String())
			served <- res
		}()
	})

	caller, err := sipua.New(sipua.Config{AOR: "sip:caller@paysip.test", Proxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	var to sip.Uri
	sip.ParseUri("sip:tutor@paysip.test", &to)
	call, err := caller.Call(ctx, to, []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := payer.Open(ctx, sipconn.New(call), "sip:tutor@paysip.test")
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
	res := <-served
	if res == nil || res.PaidSat != 5000 || res.SettlementTxID != closed.SettlementTxID || closed.SettlementTxID == "" {
		t.Fatalf("payee %+v, payer saw %+v", res, closed)
	}
	env.Mine(1)
	if got := env.Confirmed(payeeW); got <= 0 || got >= 5000 {
		t.Fatalf("payee has %d after a 5,000 sat settlement less its fee", got)
	}
}
