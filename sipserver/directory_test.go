package sipserver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// dirSubscriber is a browser-like subscriber to the live directory: SIP
// over WebSocket, a .invalid contact, the directory documents it was
// notified of in order.
type dirSubscriber struct {
	ua    *sipgo.UserAgent
	c     *sipgo.Client
	dest  string
	docs  chan *sipext.Directory
	state chan string
	tag   string
	cid   string
}

func newDirSubscriber(t *testing.T, r *rig) *dirSubscriber {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("ab12cd34.invalid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	c, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("ab12cd34.invalid"))
	d := &dirSubscriber{ua: ua, c: c, dest: fmt.Sprintf("127.0.0.1:%d", r.srv.HTTPPort()), docs: make(chan *sipext.Directory, 16), state: make(chan string, 16),
		tag: sip.GenerateTagN(8), cid: sip.GenerateTagN(16)}
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if ev := req.GetHeader("Event"); ev == nil || ev.Value() != sipserver.DirectoryEvent {
			t.Errorf("NOTIFY Event %v", ev)
		}
		doc, err := sipext.DecodeDirectory(strings.NewReader(string(req.Body())))
		if err != nil {
			t.Errorf("NOTIFY body %q: %v", req.Body(), err)
			return
		}
		d.state <- req.GetHeader("Subscription-State").Value()
		d.docs <- doc
	})
	return d
}

// subscribe sends a SUBSCRIBE (toTag: a refresh in the dialog).
func (d *dirSubscriber) subscribe(ctx context.Context, expires string, toTag string) (*sip.Response, error) {
	to := sip.Uri{Scheme: "sip", User: "directory", Host: domain}
	req := sip.NewRequest(sip.SUBSCRIBE, to)
	th := &sip.ToHeader{Address: to, Params: sip.NewParams()}
	if toTag != "" {
		th.Params.Add("tag", toTag)
	}
	req.AppendHeader(th)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "anonymous", Host: "anonymous.invalid"}, Params: sip.NewParams()}
	from.Params.Add("tag", d.tag)
	req.AppendHeader(from)
	cid := sip.CallIDHeader(d.cid)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "x", Host: "ab12cd34.invalid", UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}}})
	req.AppendHeader(sip.NewHeader("Event", sipserver.DirectoryEvent))
	req.AppendHeader(sip.NewHeader("Accept", "application/json"))
	if expires != "" {
		req.AppendHeader(sip.NewHeader("Expires", expires))
	}
	req.SetTransport("WS")
	req.SetDestination(d.dest)
	return d.c.Do(ctx, req)
}

func (d *dirSubscriber) next(t *testing.T, ctx context.Context) *sipext.Directory {
	t.Helper()
	select {
	case doc := <-d.docs:
		return doc
	case <-ctx.Done():
		t.Fatal("no NOTIFY")
		return nil
	}
}

// TestLiveDirectory: a browser-like subscriber over WebSocket is told of
// the whole directory at once, then of a payee joining and leaving, with
// no request of its own; a refresh, an unknown dialog, a too brief
// subscription and the end of one are answered as RFC 6665 says.
func TestLiveDirectory(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := newDirSubscriber(t, r)
	res, err := sub.subscribe(ctx, "120", "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %v %v", res, err)
	}
	if e := res.GetHeader("Expires"); e == nil || e.Value() != "120" {
		t.Fatalf("Expires of the 200: %v", e)
	}
	toTag, _ := res.To().Params.Get("tag")
	if doc := sub.next(t, ctx); len(doc.Entries) != 0 || doc.Domain != domain {
		t.Fatalf("first NOTIFY: %+v", doc)
	}
	if st := <-sub.state; !strings.HasPrefix(st, "active;expires=") {
		t.Fatalf("Subscription-State %q", st)
	}

	tutor := r.ua("tutor", true)
	if err := tutor.JoinDirectory(ctx, sipua.Offer{PriceSatPerMin: 60_000, Name: "Tutor </script>"}, 300); err != nil {
		t.Fatal(err)
	}
	doc := sub.next(t, ctx)
	if len(doc.Entries) != 1 || doc.Entries[0].AOR != "sip:tutor@"+domain || doc.Entries[0].PriceSatPerMin != 60_000 || doc.Entries[0].Name != "Tutor </script>" {
		t.Fatalf("after join: %+v", doc)
	}
	<-sub.state
	// Nothing new (only the expiry counters move): no NOTIFY.
	select {
	case doc := <-sub.docs:
		t.Fatalf("NOTIFY without a change: %+v", doc)
	case <-time.After(1500 * time.Millisecond):
	}
	if err := tutor.JoinDirectory(ctx, sipua.Offer{PriceSatPerMin: 60_000}, 0); err != nil {
		t.Fatal(err)
	}
	if doc := sub.next(t, ctx); len(doc.Entries) != 0 {
		t.Fatalf("after leave: %+v", doc)
	}
	<-sub.state

	// A payee that keeps its registration (paysip payee) leaves the
	// directory when it stops.
	keepCtx, stop := context.WithCancel(ctx)
	tutor2 := r.ua("tutor2", true)
	if err := tutor2.KeepRegistered(keepCtx, 300, &sipext.Offer{PriceSatPerMin: 120_000, Name: "Tutor 2"}); err != nil {
		t.Fatal(err)
	}
	if doc := sub.next(t, ctx); len(doc.Entries) != 1 || doc.Entries[0].AOR != "sip:tutor2@"+domain {
		t.Fatalf("after tutor2 joined: %+v", doc)
	}
	<-sub.state
	stop()
	if doc := sub.next(t, ctx); len(doc.Entries) != 0 {
		t.Fatalf("after tutor2 stopped: %+v", doc)
	}
	<-sub.state

	// A refresh in the dialog: 200 and the current state.
	if res, err := sub.subscribe(ctx, "300", toTag); err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh: %v %v", res, err)
	}
	sub.next(t, ctx)
	<-sub.state
	// A refresh of a dialog we do not have: 481.
	if res, err := sub.subscribe(ctx, "300", "nosuchtag"); err != nil || res.StatusCode != 481 {
		t.Fatalf("unknown dialog: %v %v", res, err)
	}
	// Too brief: 423 with Min-Expires.
	other := newDirSubscriber(t, r)
	if res, err := other.subscribe(ctx, "5", ""); err != nil || res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil {
		t.Fatalf("too brief: %v %v", res, err)
	}
	// The end: 200 and a terminated NOTIFY.
	if res, err := sub.subscribe(ctx, "0", toTag); err != nil || res.StatusCode != 200 {
		t.Fatalf("end: %v %v", res, err)
	}
	sub.next(t, ctx)
	if st := <-sub.state; !strings.HasPrefix(st, "terminated") {
		t.Fatalf("Subscription-State at the end %q", st)
	}
	if n := sipserver.DirectorySubscriptions(r.srv); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// TestLiveDirectoryLimits: one source holds at most
// DirectorySubsPerSource subscriptions; a subscriber that stops answering
// NOTIFYs loses its subscription; a SUBSCRIBE with another event to the
// directory is not taken for one.
func TestLiveDirectoryLimits(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Limits.RequestRate = 1000; c.Limits.RequestBurst = 1000 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var subs []*dirSubscriber
	for i := 0; i < sipserver.DirectorySubsPerSource; i++ {
		s := newDirSubscriber(t, r)
		res, err := s.subscribe(ctx, "60", "")
		if err != nil || res.StatusCode != 200 {
			if res != nil && res.StatusCode == 503 && strings.Contains(res.Reason, "rate") {
				time.Sleep(time.Second) // 2 a second, burst 10
				i--
				continue
			}
			t.Fatalf("subscription %d: %v %v", i, res, err)
		}
		s.next(t, ctx)
		subs = append(subs, s)
	}
	extra := newDirSubscriber(t, r)
	res, err := extra.subscribe(ctx, "60", "")
	for err == nil && res.StatusCode == 503 && strings.Contains(res.Reason, "rate") {
		time.Sleep(time.Second)
		res, err = extra.subscribe(ctx, "60", "")
	}
	if err != nil || res.StatusCode != 503 || !strings.Contains(res.Reason, "too many") {
		t.Fatalf("subscription over the limit: %v %v", res, err)
	}
	if n := sipserver.DirectorySubscriptions(r.srv); n != sipserver.DirectorySubsPerSource {
		t.Fatalf("%d subscriptions", n)
	}
	// One subscriber goes away (its WebSocket closes): the next change's
	// NOTIFY fails and its subscription ends.
	subs[0].ua.Close()
	tutor := r.ua("tutor", true)
	if err := tutor.JoinDirectory(ctx, sipua.Offer{PriceSatPerMin: 1000}, 300); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs[1:] {
		if doc := s.next(t, ctx); len(doc.Entries) != 1 {
			t.Fatalf("join: %+v", doc)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for sipserver.DirectorySubscriptions(r.srv) != sipserver.DirectorySubsPerSource-1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := sipserver.DirectorySubscriptions(r.srv); n != sipserver.DirectorySubsPerSource-1 {
		t.Fatalf("%d subscriptions after one subscriber left", n)
	}
	// Another event package to the directory goes to its members (here
	// the only member, the tutor's listing, which has no SUBSCRIBE
	// handler): never a directory subscription.
	alice := r.ua("alice", true)
	_, err = alice.Subscribe(ctx, uri("sip:directory@"+domain), "presence", "application/json", nil, 60)
	var st *sipua.ErrStatus
	if !errors.As(err, &st) {
		t.Logf("presence SUBSCRIBE: %v", err)
	}
	if n := sipserver.DirectorySubscriptions(r.srv); n != sipserver.DirectorySubsPerSource-1 {
		t.Fatalf("presence SUBSCRIBE made a directory subscription: %d", n)
	}
}

// TestDirectoryListingEchoedOnce: the REGISTER's 200 echoes a listing's
// quoted name with a space as it was sent (sipgo re-quoted it as
// ""Maths tutor"", which SIP.js cannot parse: the browser's listing timed out).
func TestDirectoryListingEchoedOnce(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, _ := wsClient(t, "", "ws", nil)
	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	reg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "directory", Host: domain}})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: domain}, Params: sip.NewParams()}
	from.Params.Add("tag", "ws2")
	reg.AppendHeader(from)
	reg.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "ab12cd34.invalid", UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}},
		Params: sip.HeaderParams{{K: sipext.ParamAOR, V: `"sip:bob@` + domain + `"`}, {K: sipext.ParamPrice, V: "6000"}, {K: sipext.ParamName, V: "Maths tutor"}}})
	reg.AppendHeader(sip.NewHeader("Expires", "300"))
	reg.SetTransport("WS")
	reg.SetDestination(fmt.Sprintf("127.0.0.1:%d", r.srv.HTTPPort()))
	res, err := c.Do(ctx, reg)
	if err == nil && res.StatusCode == 401 {
		res, err = c.DoDigestAuth(ctx, reg, res, sipgo.DigestAuth{Username: "bob", Password: "bob-password"})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v %v", res, err)
	}
	// sipgo keeps a parameter's quotes in its value (and writes them
	// again with another pair): the value read must be the one quoted
	// string sent.
	if v, _ := res.Contact().Params.Get(sipext.ParamName); v != `"Maths tutor"` {
		t.Fatalf("+paysip.name echoed as %s", v)
	}
	if d := r.srv.Directory(); len(d) != 1 || d[0].Name != "Maths tutor" {
		t.Fatalf("directory %+v", d)
	}
}
