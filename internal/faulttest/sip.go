package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// Domain of the harness's SIP server.
const Domain = "paysip.test"

// SIP is an open SIP server on loopback (registrar and proxy), as in
// internal/calltest, for calls whose transport is negotiated in a real
// INVITE through the proxy.
type SIP struct {
	Proxy string // host:port
}

// StartSIP starts the server for t.
func StartSIP(t testing.TB, ctx context.Context) *SIP {
	t.Helper()
	srv, err := sipserver.New(sipserver.Config{Domain: Domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Open: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("SIP server did not start")
	}
	return &SIP{Proxy: fmt.Sprintf("127.0.0.1:%d", srv.SIPPort())}
}

// UA starts a user agent for sip:user@Domain; with price > 0 it registers
// and lists itself in the directory at that price.
func (s *SIP) UA(t testing.TB, ctx context.Context, user string, price int64) *sipua.UA {
	t.Helper()
	u, err := sipua.New(sipua.Config{AOR: "sip:" + user + "@" + Domain, Proxy: s.Proxy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	if price > 0 {
		if err := u.KeepRegistered(ctx, 300, &sipua.Offer{PriceSatPerMin: price, Name: user}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// URI is sip:user@Domain.
func URI(user string) sip.Uri {
	var u sip.Uri
	sip.ParseUri("sip:"+user+"@"+Domain, &u)
	return u
}
