package sipserver_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// TestSIPAPINoReflectionAndWatchLimits: a SUBSCRIBE whose Contact names
// a victim gets its NOTIFYs along its own flow, never at the victim; a
// UDP subscriber that proved its address is notified over UDP; watches
// are capped per user and in total, their lifetime is capped, and an
// expired watch frees its place.
func TestSIPAPINoReflectionAndWatchLimits(t *testing.T) {
	env := regtest.New(t)
	r := startServer(t, func(c *sipserver.Config) {
		c.Chain, c.APIRate = env.Chain, 50
		c.Limits.MaxWatchesPerUser, c.Limits.MaxWatches, c.Limits.MaxWatchExpires = 3, 5, 60
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The victim: a UDP socket nobody subscribed from.
	victim, err := net.ListenPacket("udp", "127.0.0.12:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vport := victim.LocalAddr().(*net.UDPAddr).Port

	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	srv, _ := sipgo.NewServer(ua)
	notifies := make(chan *sip.Request, 4)
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		notifies <- req
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	c, _ := sipgo.NewClient(ua)
	sub := sip.NewRequest(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: "bitcoin", Host: domain})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: domain}, Params: sip.NewParams()}
	from.Params.Add("tag", "sub1")
	sub.AppendHeader(from)
	sub.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bitcoin", Host: domain}})
	sub.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.12", Port: vport}})
	sub.AppendHeader(sip.NewHeader("Event", sipserver.WatchEvent))
	sub.AppendHeader(sip.NewHeader("Expires", "120"))
	sub.AppendHeader(sip.NewHeader("Content-Type", ct))
	sub.SetBody([]byte(`{"v":1,"type":"watch","script":"0014` + fmt.Sprintf("%040x", 1) + `"}`))
	sub.SetTransport("TCP")
	sub.SetDestination(r.proxy())
	res, err := c.Do(ctx, sub)
	if err == nil && res.StatusCode == 401 {
		res, err = c.DoDigestAuth(ctx, sub, res, sipgo.DigestAuth{Username: "alice", Password: "alice-password"})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %v %v", res, err)
	}
	select {
	case <-notifies:
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY along the subscriber's connection")
	}
	victim.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := victim.ReadFrom(make([]byte, 4096)); err == nil {
		t.Fatalf("the victim named in Contact received %d bytes", n)
	}

	// Over UDP, a subscriber that authenticated from its address (so
	// proved it) is notified there.
	bob, err := sipua.New(sipua.Config{AOR: "sip:bob@" + domain, Proxy: r.proxy(), Transport: "udp", Username: "bob", Password: "bob-password"})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	bobNotified := make(chan bool, 4)
	bob.OnNotify(func(*sip.Request) { bobNotified <- true })
	if res, err := bob.Subscribe(ctx, uri("sip:bitcoin@"+domain), sipserver.WatchEvent, ct, []byte(`{"v":1,"type":"watch","script":"0014`+fmt.Sprintf("%040x", 2)+`"}`), 120); err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE over UDP: %v %v", res, err)
	}
	select {
	case <-bobNotified:
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY over UDP")
	}

	// Caps: alice holds 1 watch, bob 1; per user 3, in total 5.
	alice := r.ua("alice", true)
	watch := func(u *sipua.UA, n, expires int) (int, int) {
		res, a := apiCall(t, ctx, u, fmt.Sprintf(`{"v":1,"type":"watch","script":"0014%040x","expires":%d}`, n, expires))
		return res.StatusCode, a.Expires
	}
	for n := 10; n < 12; n++ {
		if code, exp := watch(alice, n, 3600); code != 200 || exp != 60 {
			t.Fatalf("alice's watch %d: %d, expires %d (cap 60)", n, code, exp)
		}
	}
	if code, _ := watch(alice, 12, 60); code != 403 {
		t.Fatalf("alice's fourth watch (3 per user): %d", code)
	}
	bobTCP := r.ua("bob", true)
	if code, _ := watch(bobTCP, 20, 60); code != 200 {
		t.Fatalf("bob's second watch: %d", code)
	}
	if code, _ := watch(bobTCP, 21, 60); code != 503 {
		t.Fatalf("a sixth watch (5 in total): %d", code)
	}
	// Renewing a watch is always allowed; one that expires frees its place.
	if code, exp := watch(alice, 11, 1); code != 200 || exp != 1 {
		t.Fatalf("renewing: %d %d", code, exp)
	}
	time.Sleep(3 * time.Second)
	if code, _ := watch(alice, 12, 60); code != 200 {
		t.Fatalf("a watch after one expired: %d", code)
	}
}
