package sipconn_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/calltest"
	"github.com/paysip/paysip/sipconn"
	"github.com/paysip/paysip/sipua"
)

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

// TestPaidCallOverMessage: a caller calls a priced address through the
// proxy; inside the call the payment protocol runs over in-dialog SIP
// MESSAGE on a real regtest node; the caller pays 5 seconds, hangs up
// with close, and the payee's settlement is on chain.
func TestPaidCallOverMessage(t *testing.T) {
	w := calltest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	payer, payee := w.Payer, w.Payee
	tutor := w.Tutor(t, ctx)
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

	call, err := w.UA(t, "caller").Call(ctx, calltest.TutorURI(), []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
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
	w.Env.Mine(1)
	if got := w.Env.Confirmed(payee.Wallet); got <= 0 || got >= 5000 {
		t.Fatalf("payee has %d after a 5,000 sat settlement less its fee", got)
	}
}
