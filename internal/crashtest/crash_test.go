package crashtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/paysip/paysip/internal/pgtest"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

// TestMain stops the throwaway PostgreSQL, if the tests started one.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var (
	buildOnce sync.Once
	procPath  string
	buildErr  error
)

func agentproc(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "agentproc-*")
		if err != nil {
			buildErr = err
			return
		}
		procPath = filepath.Join(dir, "agentproc")
		if out, err := exec.Command("go", "build", "-o", procPath, "./agentproc").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return procPath
}

// node is one side: a data directory with a wallet, run as agentproc,
// and its store: paysip.db in the directory, or a Postgres database.
type node struct {
	role string
	dir  string
	db   string // a postgres:// URL, or "" for the SQLite file
	w    *wallet.Wallet
}

// store is what store.Open takes for n's store.
func (n node) store() string {
	if n.db != "" {
		return n.db
	}
	return filepath.Join(n.dir, "paysip.db")
}

type rig struct {
	t            *testing.T
	env          *regtest.Env
	payer, payee node
	addrFile     string
	payeeProc    *exec.Cmd
	payeeDone    chan error
	logs         bytes.Buffer
	mu           sync.Mutex
}

func (r *rig) args(n node, extra ...string) []string {
	e := r.env.Node
	return append([]string{"-role", n.role, "-dir", n.dir, "-db", n.db, "-rpc", e.RPCAddr, "-user", e.RPCUser, "-pass", e.RPCPass, "-addr-file", r.addrFile}, extra...)
}

func (r *rig) cmd(n node, failpoint string, extra ...string) *exec.Cmd {
	c := exec.Command(agentproc(r.t), r.args(n, extra...)...)
	c.Env = append(os.Environ(), "PAYSIP_FAILPOINT="+failpoint)
	c.Stderr = &lockedWriter{r}
	return c
}

type lockedWriter struct{ r *rig }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.logs.Write(p)
}

func (r *rig) startPayee(failpoint string) {
	r.t.Helper()
	os.Remove(r.addrFile)
	r.payeeProc = r.cmd(r.payee, failpoint)
	if err := r.payeeProc.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	r.payeeDone = done
	go func() { done <- r.payeeProc.Wait() }()
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(r.addrFile); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	r.t.Fatalf("payee did not start:\n%s", r.logs.String())
}

func (r *rig) stopPayee() {
	if r.payeeProc != nil && r.payeeProc.ProcessState == nil {
		r.payeeProc.Process.Kill()
		<-r.payeeDone
	}
}

// newRig makes a payer and a payee with funds; on Postgres each gets a
// database of its own.
func newRig(t *testing.T, backend string) *rig {
	var dbs [2]string
	if backend == "postgres" {
		dbs = [2]string{pgtest.DSN(t), pgtest.DSN(t)}
	}
	env := regtest.New(t)
	r := &rig{t: t, env: env, addrFile: filepath.Join(t.TempDir(), "payee.addr")}
	for i, role := range []string{"payer", "payee"} {
		dir := filepath.Join(env.Dir, role)
		w, _, err := wallet.Create(filepath.Join(dir, "wallet.json"), env.Chain, "")
		if err != nil {
			t.Fatal(err)
		}
		n := node{role: role, dir: dir, db: dbs[i], w: w}
		if role == "payer" {
			r.payer = n
		} else {
			r.payee = n
		}
	}
	a, _ := r.payer.w.NewAddress()
	env.Fund(a, 1_000_000)
	a, _ = r.payer.w.NewAddress()
	env.Fund(a, 1_000_000) // a second coin, for a second channel
	t.Cleanup(r.stopPayee)
	return r
}

// reopen reads a wallet's balance through a fresh handle (the process
// wrote the file meanwhile).
func (r *rig) confirmed(n node) int64 {
	w, err := wallet.Open(filepath.Join(n.dir, "wallet.json"), r.env.Chain, "")
	if err != nil {
		r.t.Fatal(err)
	}
	return r.env.Confirmed(w)
}

// TestCrashAtEachStep kills the payee, and separately the payer, at each
// step of the protocol, restarts it from its data directory, lets the call
// finish, and then has everything settled or refunded on chain. In every
// case the payee ends with exactly what it acknowledged on each channel
// (or more, never less) and the payer with everything else, less fees.
func TestCrashAtEachStep(t *testing.T) {
	points := []struct{ who, point string }{
		{"payee", "payee-refund-signed"},
		{"payee", "payee-funding-broadcast"},
		{"payee", "payee-payment-stored#3"},
		{"payee", "payee-acked#3"},
		{"payer", "payer-refund-stored"},
		{"payer", "payer-funding-broadcast"},
		{"payer", "payer-payment-stored#3"},
		{"payer", "payer-acked#3"},
	}
	runs := 2
	if testing.Short() {
		runs = 1
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, p := range points {
			for run := 1; run <= runs; run++ {
				t.Run(fmt.Sprintf("%s/%s/run%d", backend, p.point, run), func(t *testing.T) {
					t.Parallel()
					crashOnce(t, backend, p.who, p.point)
				})
			}
		}
	}
}

func crashOnce(t *testing.T, backend, who, point string) {
	r := newRig(t, backend)
	defer func() {
		if t.Failed() {
			t.Logf("process logs:\n%s", r.logs.String())
		}
	}()
	payerBefore, payeeBefore := r.confirmed(r.payer), r.confirmed(r.payee)

	payeeFP, payerFP := "", ""
	if who == "payee" {
		payeeFP = point
	} else {
		payerFP = point
	}
	r.startPayee(payeeFP)
	err := r.cmd(r.payer, payerFP).Run()
	if who == "payee" {
		select {
		case <-r.payeeDone:
		case <-time.After(30 * time.Second):
			t.Fatal("payee was not killed at its failpoint")
		}
		if err == nil {
			t.Fatal("payer finished although the payee died")
		}
		r.startPayee("") // back from its data directory
	} else if err == nil {
		t.Fatal("payer was not killed at its failpoint")
	}
	// The payer, started again, finishes the call.
	var out bytes.Buffer
	c := r.cmd(r.payer, "")
	c.Stdout = &out
	if err := c.Run(); err != nil {
		t.Fatalf("payer after restart: %v", err)
	}
	r.stopPayee()

	// Settle or refund everything: the payee settles what is within its
	// margin of expiry, then the payer takes its refunds.
	ctx := context.Background()
	r.env.Mine(20 - 3) // every payee channel is now within its settle margin
	if err := r.cmd(r.payee, "", "-recover-only").Run(); err != nil {
		t.Fatalf("payee recovery: %v", err)
	}
	r.env.Mine(6)            // past every lock time
	for i := 0; i < 2; i++ { // refund, then reconcile once confirmed
		if err := r.cmd(r.payer, "", "-recover-only").Run(); err != nil {
			t.Fatalf("payer recovery: %v", err)
		}
		r.env.Mine(1)
	}
	if err := r.cmd(r.payee, "", "-recover-only").Run(); err != nil {
		t.Fatalf("payee reconcile: %v", err)
	}

	// The outcome, channel by channel, read from the chain.
	db, err := store.Open(r.payer.store())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var payerSpent, payeeGot, totalAcked int64
	for _, rec := range recs {
		ch := rec.Channel
		fundingFee := fee(t, r.env, ch.Outpoint.Hash.String())
		closeTx := tx(t, r.env, rec.CloseTxID)
		closeFee := fee(t, r.env, rec.CloseTxID)
		payerSpent += fundingFee
		totalAcked += rec.AckedSat
		switch rec.State {
		case store.StateSettled:
			change := int64(0)
			for _, o := range closeTx.TxOut {
				if bytes.Equal(o.PkScript, ch.PayerScript) {
					change = o.Value
				}
			}
			settled := ch.CapacitySat - change
			if settled < rec.AckedSat || settled > rec.SignedSat {
				t.Errorf("channel %s settled %d; payer acked %d, signed %d", rec.ID(), settled, rec.AckedSat, rec.SignedSat)
			}
			payerSpent += settled
			payeeGot += settled - closeFee
		case store.StateRefunded:
			if rec.AckedSat != 0 {
				t.Errorf("channel %s refunded although %d was acknowledged", rec.ID(), rec.AckedSat)
			}
			payerSpent += closeFee
		default:
			t.Errorf("channel %s left %s", rec.ID(), rec.State)
		}
	}
	if totalAcked < 6000 {
		t.Errorf("the call's 6 s (6000 sat) were not all acknowledged: %d", totalAcked)
	}
	payerAfter, payeeAfter := r.confirmed(r.payer), r.confirmed(r.payee)
	if payerBefore-payerAfter != payerSpent {
		t.Errorf("payer spent %d, the channels account for %d", payerBefore-payerAfter, payerSpent)
	}
	if payeeAfter-payeeBefore != payeeGot {
		t.Errorf("payee got %d, the settlements account for %d", payeeAfter-payeeBefore, payeeGot)
	}
	t.Logf("%d channel(s); payer spent %d, payee got %d", len(recs), payerSpent, payeeGot)
}
