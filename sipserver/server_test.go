package sipserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
)

const domain = "paysip.test"

type rig struct {
	t   *testing.T
	srv *sipserver.Server
	db  *store.DB
}

func startServer(t *testing.T, mod func(*sipserver.Config)) *rig {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "paysip.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	for _, u := range []string{"alice", "bob", "tutor", "tutor2", "tutor3"} {
		if err := db.AddUser(ctx, u, domain, u+"-password"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := sipserver.Config{Domain: domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Accounts: db,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := sipserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		select { // done is empty if Run already failed
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return &rig{t: t, srv: srv, db: db}
}

func (r *rig) proxy() string { return fmt.Sprintf("127.0.0.1:%d", r.srv.SIPPort()) }

func (r *rig) ua(user string, auth bool) *sipua.UA {
	r.t.Helper()
	cfg := sipua.Config{AOR: "sip:" + user + "@" + domain, Proxy: r.proxy()}
	if auth {
		cfg.Username, cfg.Password = user, user+"-password"
	}
	u, err := sipua.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { u.Close() })
	return u
}

func uri(s string) sip.Uri {
	var u sip.Uri
	sip.ParseUri(s, &u)
	return u
}

func TestRegistrarAndProxy(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Without credentials: 401. With: 200 and the binding echoed.
	anon := r.ua("alice", false)
	var st *sipua.ErrStatus
	if _, err := anon.Register(ctx, 300); !errors.As(err, &st) || st.Code != 401 {
		t.Fatalf("anonymous REGISTER: %v", err)
	}
	alice := r.ua("alice", true)
	bs, err := alice.Register(ctx, 300)
	if err != nil || len(bs) != 1 {
		t.Fatalf("REGISTER: %v %v", bs, err)
	}
	if e, _ := bs[0].Params.Get("expires"); e != "300" {
		t.Fatalf("expires %q", e)
	}
	// bob may not bind alice's address.
	mallory, _ := sipua.New(sipua.Config{AOR: "sip:alice@" + domain, Proxy: r.proxy(), Username: "bob", Password: "bob-password"})
	defer mallory.Close()
	if _, err := mallory.Register(ctx, 300); !errors.As(err, &st) || st.Code != 403 {
		t.Fatalf("bob registering alice: %v", err)
	}

	// MESSAGE from an anonymous caller to alice reaches her.
	got := make(chan string, 1)
	alice.OnMessage(func(req *sip.Request) (int, string) {
		got <- string(req.Body())
		return 200, "OK"
	})
	caller := r.ua("caller", false)
	res, err := caller.Message(ctx, uri("sip:alice@"+domain), "text/plain", []byte("hello"))
	if err != nil || res.StatusCode != 200 || <-got != "hello" {
		t.Fatalf("MESSAGE: %v %v", res, err)
	}
	// Nobody registered: 480.
	if res, err := caller.Message(ctx, uri("sip:bob@"+domain), "text/plain", []byte("x")); err != nil || res.StatusCode != 480 {
		t.Fatalf("MESSAGE to unregistered: %v %v", res, err)
	}
}

func TestDirectoryForkingAnd402(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	received := map[string]int{}
	for i, name := range []string{"tutor", "tutor2", "tutor3"} {
		u := r.ua(name, true)
		if _, err := u.Register(ctx, 300); err != nil {
			t.Fatal(err)
		}
		if err := u.JoinDirectory(ctx, sipua.Offer{PriceSatPerMin: int64(60_000 * (i + 1)), Name: "Tutor " + name, PayeeKey: strings.Repeat("02", 33)}, 300); err != nil {
			t.Fatal(err)
		}
		u.OnMessage(func(req *sip.Request) (int, string) {
			mu.Lock()
			received[name]++
			mu.Unlock()
			return 200, "OK"
		})
		// A listing naming another's address is refused.
		if name == "tutor" {
			other, _ := sipua.New(sipua.Config{AOR: "sip:tutor2@" + domain, Proxy: r.proxy(), Username: "tutor", Password: "tutor-password"})
			var st *sipua.ErrStatus
			if err := other.JoinDirectory(ctx, sipua.Offer{PriceSatPerMin: 1}, 300); !errors.As(err, &st) || st.Code != 403 {
				t.Fatalf("listing for another address: %v", err)
			}
			other.Close()
		}
	}
	// The listing over HTTP.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/directory", r.srv.HTTPPort()))
	if err != nil {
		t.Fatal(err)
	}
	var dir struct{ Entries []sipserver.Listing }
	json.NewDecoder(resp.Body).Decode(&dir)
	resp.Body.Close()
	if len(dir.Entries) != 3 {
		t.Fatalf("directory %+v", dir)
	}
	for _, e := range dir.Entries {
		if e.PriceSatPerMin%60_000 != 0 || !strings.HasPrefix(e.AOR, "sip:tutor") || e.Name == "" {
			t.Fatalf("entry %+v", e)
		}
	}
	// An "ask" MESSAGE to the directory is forked to every member.
	caller := r.ua("alice", true)
	res, err := caller.Message(ctx, uri("sip:directory@"+domain), "application/vnd.paysip+json", []byte(`{"ask":true}`))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("ask: %v %v", res, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	if len(received) != 3 {
		t.Fatalf("members reached: %v", received)
	}
	mu.Unlock()

	// A caller without paysip gets 402 with the terms.
	_, err = caller.Call(ctx, uri("sip:tutor@"+domain), []byte("v=0\r\n"))
	var st *sipua.ErrStatus
	if !errors.As(err, &st) || st.Code != 402 {
		t.Fatalf("INVITE without paysip: %v", err)
	}
	terms := st.Res.GetHeader(sipserver.TermsHeader)
	if terms == nil || !strings.Contains(terms.Value(), "price-sat-per-min=60000") || !strings.Contains(terms.Value(), "version=1") {
		t.Fatalf("terms header %v", terms)
	}
}

func TestCallThroughProxy(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tutor := r.ua("tutor", true)
	if _, err := tutor.Register(ctx, 300); err != nil {
		t.Fatal(err)
	}
	if err := tutor.JoinDirectory(ctx, sipua.Offer{PriceSatPerMin: 60_000}, 300); err != nil {
		t.Fatal(err)
	}
	answered := make(chan *sipua.Call, 1)
	tutorGot := make(chan string, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		c, err := ic.Answer([]byte("v=0\r\no=tutor\r\n"))
		if err != nil {
			t.Error(err)
			return
		}
		c.OnMessage(func(req *sip.Request) (int, string) {
			tutorGot <- string(req.Body())
			return 200, "OK"
		})
		answered <- c
	})
	caller := r.ua("caller", false) // anonymous callers may call the domain's addresses
	call, err := caller.Call(ctx, uri("sip:tutor@"+domain), []byte("v=0\r\no=caller\r\n"), sip.NewHeader("Supported", "paysip"))
	if err != nil {
		t.Fatal(err)
	}
	if string(call.RemoteSDP) != "v=0\r\no=tutor\r\n" {
		t.Fatalf("answer SDP %q", call.RemoteSDP)
	}
	if rr := call.Response.GetHeader("Record-Route"); rr == nil {
		t.Fatal("no Record-Route: in-dialog requests would bypass the proxy")
	}
	tc := <-answered
	// In-dialog MESSAGE both ways, through the proxy.
	if _, err := call.Message(ctx, "application/vnd.paysip+json", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if got := <-tutorGot; got != `{"v":1}` {
		t.Fatalf("tutor got %q", got)
	}
	callerGot := make(chan string, 1)
	call.OnMessage(func(req *sip.Request) (int, string) { callerGot <- string(req.Body()); return 200, "OK" })
	if _, err := tc.Message(ctx, "application/vnd.paysip+json", []byte(`{"ack":1}`)); err != nil {
		t.Fatal(err)
	}
	if got := <-callerGot; got != `{"ack":1}` {
		t.Fatalf("caller got %q", got)
	}
	// The caller hangs up; the tutor's call ends.
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tc.Done():
	case <-ctx.Done():
		t.Fatal("BYE did not reach the tutor")
	}
}
