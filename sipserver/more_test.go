package sipserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// wsClient is a browser-like user agent: SIP over WebSocket to the
// server's /sip, with a .invalid contact.
func wsClient(t *testing.T, target string, scheme string, tlsConf *tls.Config) (*sipgo.Client, *sipgo.Server, chan string) {
	t.Helper()
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgentHostname("ab12cd34.invalid")}
	if tlsConf != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(tlsConf))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	got := make(chan string, 4)
	srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
		got <- string(req.Body())
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	c, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("ab12cd34.invalid"))
	return c, srv, got
}

func wsRegister(t *testing.T, ctx context.Context, c *sipgo.Client, transport, dest string) *sip.Response {
	t.Helper()
	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	reg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: domain}})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: domain}, Params: sip.NewParams()}
	from.Params.Add("tag", "ws1")
	reg.AppendHeader(from)
	reg.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "ab12cd34.invalid",
		UriParams: sip.HeaderParams{{K: "transport", V: strings.ToLower(transport)}}},
		Params: sip.HeaderParams{{K: "+sip.instance", V: `"<urn:uuid:5ee2bb7e>"`}, {K: "reg-id", V: "1"}}})
	reg.AppendHeader(sip.NewHeader("Expires", "300"))
	reg.SetTransport(transport)
	reg.SetDestination(dest)
	res, err := c.Do(ctx, reg)
	if err == nil && res.StatusCode == 401 {
		res, err = c.DoDigestAuth(ctx, reg, res, sipgo.DigestAuth{Username: "bob", Password: "bob-password"})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER over %s: %v %v", transport, res, err)
	}
	return res
}

// TestWebSocketClient: a browser-like client registers over WebSocket on
// the HTTP server's /sip, and a caller on TCP reaches it down that
// WebSocket (the flow it registered on).
func TestWebSocketClient(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, got := wsClient(t, "", "ws", nil)
	res := wsRegister(t, ctx, c, "WS", fmt.Sprintf("127.0.0.1:%d", r.srv.HTTPPort()))
	if ct := res.Contact(); ct == nil || !strings.Contains(ct.String(), "urn:uuid:5ee2bb7e") || !strings.Contains(ct.String(), "reg-id=1") {
		t.Fatalf("binding not echoed as registered: %s", res.String())
	}
	caller := r.ua("caller", false)
	mres, err := caller.Message(ctx, uri("sip:bob@"+domain), "text/plain", []byte("to the browser"))
	if err != nil || mres.StatusCode != 200 || <-got != "to the browser" {
		t.Fatalf("MESSAGE to the WebSocket client: %v %v", mres, err)
	}
}

// TestTLS: SIP over TLS registers and is routed like any transport.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	r := startServer(t, func(c *sipserver.Config) { c.TLSCert, c.TLSKey, c.TLSAddr = certFile, keyFile, "127.0.0.1:0" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, got := wsClient(t, "", "tls", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	wsRegister(t, ctx, c, "TLS", fmt.Sprintf("127.0.0.1:%d", r.srv.TLSPort()))
	caller := r.ua("caller", false)
	mres, err := caller.Message(ctx, uri("sip:bob@"+domain), "text/plain", []byte("over tls"))
	if err != nil || mres.StatusCode != 200 || <-got != "over tls" {
		t.Fatalf("MESSAGE to the TLS client: %v %v", mres, err)
	}
}

func selfSigned(t *testing.T) (string, string, *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "paysip test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestInviteForking: two contacts of one address; the first to answer
// wins, the other, still ringing, gets a CANCEL.
func TestInviteForking(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	canceled := make(chan bool, 1)
	for _, answer := range []bool{false, true} {
		u := r.ua("tutor", true)
		if _, err := u.Register(ctx, 300); err != nil {
			t.Fatal(err)
		}
		u.OnInvite(func(ic *sipua.IncomingCall) {
			ic.Ring()
			if answer {
				time.Sleep(200 * time.Millisecond)
				ic.Answer([]byte("v=0\r\n"))
				return
			}
			select {
			case <-ic.Canceled():
				canceled <- true
			case <-time.After(10 * time.Second):
				canceled <- false
				ic.Reject(486, "Busy Here")
			}
		})
	}
	caller := r.ua("caller", false)
	call, err := caller.Call(ctx, uri("sip:tutor@"+domain), []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
	if err != nil {
		t.Fatal(err)
	}
	if !<-canceled {
		t.Fatal("the ringing branch was not cancelled")
	}
	call.Hangup(ctx)

	// The caller cancels before anyone answers: every branch is cancelled
	// and the caller sees the call end.
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	slow := r.ua("bob", true)
	slow.Register(ctx, 300)
	slow.OnInvite(func(ic *sipua.IncomingCall) {
		ic.Ring()
		select {
		case <-ic.Canceled():
			canceled <- true
		case <-time.After(10 * time.Second):
			canceled <- false
		}
	})
	_, err = caller.Call(rctx, uri("sip:bob@"+domain), []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
	rcancel()
	if err == nil {
		t.Fatal("the caller gave up, yet its call was established")
	}
	if !<-canceled {
		t.Fatal("the callee was not cancelled when the caller gave up")
	}
}

// TestNoAnonymousInbound: with the setting, an anonymous caller is
// challenged; an account holder goes through.
func TestNoAnonymousInbound(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.NoAnonymousInbound = true })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := r.ua("alice", true)
	alice.Register(ctx, 300)
	alice.OnMessage(func(*sip.Request) (int, string) { return 200, "OK" })
	if res, err := r.ua("anon", false).Message(ctx, uri("sip:alice@"+domain), "text/plain", []byte("x")); err != nil || res.StatusCode != 407 {
		t.Fatalf("anonymous: %v %v", res, err)
	}
	if res, err := r.ua("bob", true).Message(ctx, uri("sip:alice@"+domain), "text/plain", []byte("x")); err != nil || res.StatusCode != 200 {
		t.Fatalf("bob: %v %v", res, err)
	}
	// The directory over the UA library.
	if _, err := sipua.FetchDirectory(ctx, fmt.Sprintf("http://127.0.0.1:%d", r.srv.HTTPPort())); err != nil {
		t.Fatal(err)
	}
}

// TestByeReason: a BYE's Reason header (RFC 3326) crosses the proxy.
func TestByeReason(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tutor := r.ua("tutor", true)
	tutor.Register(ctx, 300)
	answered := make(chan *sipua.Call, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		c, _ := ic.Answer([]byte("v=0\r\n"))
		answered <- c
	})
	call, err := r.ua("caller", false).Call(ctx, uri("sip:tutor@"+domain), []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
	if err != nil {
		t.Fatal(err)
	}
	tc := <-answered
	time.Sleep(100 * time.Millisecond) // the ACK
	if err := tc.HangupWithReason(ctx, `SIP;cause=402;text="payment late"`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("BYE did not arrive")
	}
	if got := call.HangupReason(); !strings.Contains(got, "payment late") {
		t.Fatalf("Reason %q", got)
	}
}

// TestByeToAnonymousWebSocketCaller: a caller without an account, on a
// WebSocket (a browser calling anonymously: its Contact is a .invalid host,
// RFC 7118 section 5, and it is not registered), is reached by the callee's
// BYE on the connection its INVITE came on; the proxy never looks the
// .invalid name up (RFC 6761 section 6.4).
func TestByeToAnonymousWebSocketCaller(t *testing.T) {
	r := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tutor := r.ua("tutor", true)
	if _, err := tutor.Register(ctx, 300); err != nil {
		t.Fatal(err)
	}
	answered := make(chan *sipua.Call, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		c, _ := ic.Answer([]byte("v=0\r\n"))
		answered <- c
	})
	c, srv, _ := wsClient(t, "", "ws", nil)
	byes := make(chan *sip.Request, 1)
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		byes <- req
	})
	dest := fmt.Sprintf("127.0.0.1:%d", r.srv.HTTPPort())
	inv := sip.NewRequest(sip.INVITE, uri("sip:tutor@"+domain))
	inv.AppendHeader(&sip.ToHeader{Address: uri("sip:tutor@" + domain)})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "anonymous", Host: "anonymous.invalid"}, Params: sip.NewParams()}
	from.Params.Add("tag", "anon1")
	inv.AppendHeader(from)
	inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "x7", Host: "ab12cd34.invalid",
		UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}}})
	inv.AppendHeader(sip.NewHeader("Supported", "paysip"))
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte("v=0\r\n"))
	inv.SetTransport("WS")
	inv.SetDestination(dest)
	tx, err := c.TransactionRequest(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	var ok *sip.Response
	for ok == nil {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 300 {
				t.Fatalf("INVITE: %s", res.StartLine())
			}
			if res.StatusCode == 200 {
				ok = res
			}
		case <-ctx.Done():
			t.Fatal("no 200 to the INVITE")
		}
	}
	// The ACK to the 2xx: to the callee's Contact along the reversed
	// Record-Route (RFC 3261 section 12.1.2).
	ack := sip.NewRequest(sip.ACK, ok.Contact().Address)
	ack.AppendHeader(sip.HeaderClone(inv.From()))
	ack.AppendHeader(sip.HeaderClone(ok.To()))
	ack.AppendHeader(sip.HeaderClone(inv.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	var rr []string
	for _, h := range ok.GetHeaders("Record-Route") {
		rr = append(rr, h.Value())
	}
	for i := len(rr) - 1; i >= 0; i-- {
		ack.AppendHeader(sip.NewHeader("Route", rr[i]))
	}
	ack.SetTransport("WS")
	ack.SetDestination(dest)
	if err := c.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	tc := <-answered
	time.Sleep(100 * time.Millisecond) // the ACK
	if err := tc.Hangup(ctx); err != nil {
		t.Fatalf("BYE to the anonymous WebSocket caller: %v", err)
	}
	select {
	case bye := <-byes:
		if bye.Recipient.Host != "ab12cd34.invalid" {
			t.Fatalf("BYE to %s", bye.Recipient.String())
		}
	case <-ctx.Done():
		t.Fatal("the BYE did not reach the caller's WebSocket")
	}
}
