// Package calltest is the test harness for paid calls between Go agents:
// a regtest node, an open SIP server on loopback, a funded payer and a
// payee (each with its wallet and store), and their user agents.
package calltest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
)

// Domain and price of the harness's calls.
const (
	Domain = "paysip.test"
	Price  = 60_000 // sat/min
)

// World is one regtest node, one SIP server, a payer and a payee.
type World struct {
	Env   *regtest.Env
	Proxy string // the SIP server, host:port
	Payer *agent.Payer
	Payee *agent.Payee
}

// New starts everything for t; the payer has 2,000,000 sat and opens
// 500,000 sat pools.
func New(t testing.TB) *World {
	t.Helper()
	env := regtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
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
	return &World{
		Env:   env,
		Proxy: fmt.Sprintf("127.0.0.1:%d", srv.SIPPort()),
		Payer: &agent.Payer{Wallet: payerW, Chain: env.Chain, Store: openStore("payer.db"), CapacitySat: 500_000, MaxPriceSatPerMin: 60_000},
		Payee: &agent.Payee{Wallet: payeeW, Chain: env.Chain, Store: openStore("payee.db"), PriceSatPerMin: Price, Poll: 20 * time.Millisecond, FeeHeadroom: 1},
	}
}

// UA starts a user agent for sip:user@Domain through the server.
func (w *World) UA(t testing.TB, user string) *sipua.UA {
	t.Helper()
	u, err := sipua.New(sipua.Config{AOR: "sip:" + user + "@" + Domain, Proxy: w.Proxy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// Tutor starts the payee's user agent, registered and listed at Price.
func (w *World) Tutor(t testing.TB, ctx context.Context) *sipua.UA {
	t.Helper()
	u := w.UA(t, "tutor")
	if err := u.KeepRegistered(ctx, 300, &sipext.Offer{PriceSatPerMin: Price, Name: "Tutor"}); err != nil {
		t.Fatal(err)
	}
	return u
}

// TutorURI is the payee's address.
func TutorURI() sip.Uri {
	var u sip.Uri
	sip.ParseUri("sip:tutor@"+Domain, &u)
	return u
}
