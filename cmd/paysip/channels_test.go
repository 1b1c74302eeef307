package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

// TestChannelsCommand opens a channel between two data directories laid
// out as the CLI lays them out, then drives 'paysip channels' against the
// same node: list, a refund refused before its lock time, a settlement.
func TestChannelsCommand(t *testing.T) {
	t.Parallel()
	bin := paysipBin(t)
	env := regtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(name string) (string, *wallet.Wallet, *store.DB) {
		dir := filepath.Join(t.TempDir(), name)
		w, _, err := wallet.Create(filepath.Join(dir, "regtest", "wallet.json"), env.Chain, "")
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(filepath.Join(dir, "regtest", "paysip.db"))
		if err != nil {
			t.Fatal(err)
		}
		return dir, w, db
	}
	payerDir, payerW, payerDB := open("payer")
	payeeDir, payeeW, payeeDB := open("payee")
	a, _ := payerW.NewAddress()
	env.Fund(a, 2_000_000)
	payer := &agent.Payer{Wallet: payerW, Chain: env.Chain, Store: payerDB, CapacitySat: 500_000, MaxPriceSatPerMin: 60_000}
	payee := &agent.Payee{Wallet: payeeW, Chain: env.Chain, Store: payeeDB, PriceSatPerMin: 60_000, KeepOpen: true, Poll: 20 * time.Millisecond, FeeHeadroom: 1}
	c1, c2 := agent.Pipe()
	done := make(chan struct{})
	go func() { payee.Serve(ctx, c2, "caller"); close(done) }()
	s, err := payer.Open(ctx, c1, "tutor")
	if err != nil {
		t.Fatal(err)
	}
	for sec := int64(1); sec <= 4; sec++ {
		owed, _ := channel.Owed(60_000, sec)
		if err := s.Pay(ctx, owed); err != nil {
			t.Fatal(err)
		}
	}
	c1.Close()
	<-done
	id := s.Channel().ID()
	payerDB.Close()
	payeeDB.Close()

	paysip := func(dir string, args ...string) (string, error) {
		n := env.Node
		full := append([]string{"channels", "--datadir", dir, "--btcd-rpc", n.RPCAddr, "--btcd-user", n.RPCUser, "--btcd-pass", n.RPCPass}, args...)
		out, err := exec.Command(bin, full...).CombinedOutput()
		return string(out), err
	}
	out, err := paysip(payeeDir, "--json", "list")
	if err != nil {
		t.Fatalf("list: %v: %s", err, out)
	}
	var rows []channelRow
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("list output %q: %v", out, err)
	}
	if r := rows[0]; r.ID != id || r.Role != "payee" || r.State != "open" || r.PaidSat != 4000 || r.CapacitySat != 500_000 {
		t.Fatalf("row %+v", r)
	}
	out, err = paysip(payerDir, "refund", id)
	if err == nil || !strings.Contains(out, "refund locked until height") {
		t.Fatalf("early refund: %v: %s", err, out)
	}
	out, err = paysip(payeeDir, "settle", id)
	if err != nil {
		t.Fatalf("settle: %v: %s", err, out)
	}
	env.Mine(1)
	out, _ = paysip(payerDir, "--json", "list")
	if !strings.Contains(out, `"paid_sat": 4000`) {
		t.Fatalf("payer list: %s", out)
	}
	if got := env.Confirmed(payeeW); got <= 0 || got >= 4000 {
		t.Fatalf("payee balance %d after settling 4000", got)
	}
}
