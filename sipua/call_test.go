package sipua_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

// proxy starts an open SIP server for paysip.test on loopback.
func proxy(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := sipserver.New(sipserver.Config{Domain: "paysip.test", SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Open: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("SIP server did not start")
	}
	return fmt.Sprintf("127.0.0.1:%d", srv.SIPPort())
}

func ua(t *testing.T, proxy, user string) *sipua.UA {
	t.Helper()
	u, err := sipua.New(sipua.Config{AOR: "sip:" + user + "@paysip.test", Proxy: proxy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// TestMessageBeforeHandler: an in-dialog MESSAGE sent the moment the call
// is answered, before the callee's application has taken the call over,
// waits for its handler instead of being refused with 405 (the flaky
// payer-vanishes/message demo); once the call has ended, an in-dialog
// MESSAGE gets 481.
func TestMessageBeforeHandler(t *testing.T) {
	p := proxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callee := ua(t, p, "tutor")
	if _, err := callee.Register(ctx, 300); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	answered := make(chan *sipua.Call, 1)
	callee.OnInvite(func(ic *sipua.IncomingCall) {
		call, err := ic.Answer([]byte("v=0\r\n"))
		if err != nil {
			t.Error(err)
			return
		}
		go func() {
			time.Sleep(300 * time.Millisecond) // the application is slow to take the call over
			call.OnMessage(func(req *sip.Request) (int, string) {
				got <- string(req.Body())
				return sip.StatusOK, "OK"
			})
			answered <- call
		}()
	})
	var to sip.Uri
	sip.ParseUri("sip:tutor@paysip.test", &to)
	call, err := ua(t, p, "caller").Call(ctx, to, []byte("v=0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.Message(ctx, "text/plain", []byte("hello")); err != nil {
		t.Fatalf("MESSAGE right after the answer: %v", err)
	}
	if m := <-got; m != "hello" {
		t.Fatalf("callee got %q", m)
	}
	in := <-answered
	if err := in.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	<-call.Done()
	// The callee's dialog is gone: a late in-dialog MESSAGE is 481. (The
	// caller's own Call refuses to send on an ended dialog, so send it
	// from the callee's side to the caller, whose dialog ended too.)
	_, err = in.Message(ctx, "text/plain", []byte("late"))
	var st *sipua.ErrStatus
	if !errors.As(err, &st) || st.Code != sip.StatusCallTransactionDoesNotExists {
		t.Fatalf("MESSAGE after the end: %v", err)
	}
}
