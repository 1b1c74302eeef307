package clustertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/store"
)

// TestPayeeFleet (issue 14, test 4): two 'paysip payee' processes for one
// address share one PostgreSQL store and one wallet (the same mnemonic).
// A call is answered by one of them; it is killed (SIGKILL) mid-call. The
// caller's next call resumes the same channel with the other member,
// which settles it. On chain the funding was spent once, by that
// settlement, which pays the caller back exactly the pool less what was
// acknowledged; the payee's store holds exactly the acknowledged amount.
func TestPayeeFleet(t *testing.T) {
	serveDB, payeeDB := pgURL(t), pgURL(t)
	w := newWorld(t)
	w.addAccount(serveDB, "tutor")
	node := w.startServe("serve", serveDB)

	dir1, dir2 := t.TempDir(), t.TempDir()
	m1 := w.payee("member-1", "tutor", node.sipAddr(), dir1, "--db", payeeDB)
	// The second member restores the same wallet: the same keys sign for
	// every channel of the address, whichever member opened it.
	wallet, err := os.ReadFile(filepath.Join(dir1, "regtest", "wallet-tutor.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir2, "regtest"), 0o700)
	if err := os.WriteFile(filepath.Join(dir2, "regtest", "wallet-tutor.json"), wallet, 0o600); err != nil {
		t.Fatal(err)
	}
	m2 := w.payee("member-2", "tutor", node.sipAddr(), dir2, "--db", payeeDB)

	callerDir := t.TempDir()
	w.fundCaller(callerDir)
	// First call: long; whoever answers is killed once it has been paid
	// a few seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first := exec.CommandContext(ctx, w.bin, append([]string{"call", "sip:tutor@" + domain, "--wallet", "caller", "--datadir", callerDir,
		"--sip-server", node.sipAddr(), "--tick", "100ms", "--loopback", "--seconds", "60"}, w.node...)...)
	firstOut := &syncBuffer{}
	first.Stdout, first.Stderr = firstOut, firstOut
	first.WaitDelay = 5 * time.Second
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	var answered, left *proc
	earned := regexp.MustCompile(`earned\s+(\d+) sat`)
	for deadline := time.Now().Add(60 * time.Second); answered == nil; time.Sleep(50 * time.Millisecond) {
		for _, m := range []*proc{m1, m2} {
			if ms := earned.FindAllStringSubmatch(m.out.String(), -1); len(ms) > 0 {
				if n, _ := strconv.Atoi(ms[len(ms)-1][1]); n >= 3000 {
					answered = m
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no member was paid 3 s of call:\ncaller: %s", firstOut.String())
		}
	}
	left = m1
	if answered == m1 {
		left = m2
	}
	answered.kill()
	t.Logf("%s answered and was killed; %s is left", answered.name, left.name)
	select {
	case <-firstDone:
	case <-ctx.Done():
		t.Fatalf("the first call never ended after its payee died:\n%s", firstOut.String())
	}
	m := openRe.FindStringSubmatch(firstOut.String())
	if m == nil {
		t.Fatalf("the first call opened no channel:\n%s", firstOut.String())
	}
	id := m[1]

	// Second call: the channel is resumed with the member left, which
	// settles it when the call closes it.
	r, err := w.call(callerDir, "tutor", node.sipAddr(), "--seconds", "2", "--close", "-v")
	if err != nil || r.settlement == "" || !strings.Contains(r.out, "resuming channel "+id) {
		if rec, err := openStore(t, filepath.Join(callerDir, "regtest", "paysip-caller.db")).Get(context.Background(), id); err == nil {
			t.Logf("payer record: state %s signed %d acked %d", rec.State, rec.SignedSat, rec.AckedSat)
		}
		t.Fatalf("second call (should resume %s): %v\n%s", id, err, r.out)
	}
	left.waitFor(t, "ended: paid", 30*time.Second)
	w.confirmed(r.settlement)

	// What each side stored.
	payer := openStore(t, filepath.Join(callerDir, "regtest", "paysip-caller.db"))
	payee := openStore(t, payeeDB)
	pr, err := payer.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	er, err := payee.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if er.BestSat != pr.AckedSat || pr.AckedSat < 5000 {
		t.Fatalf("payee holds %d sat, the payer saw %d acknowledged", er.BestSat, pr.AckedSat)
	}
	if er.CloseTxID != r.settlement {
		t.Fatalf("payee's store names settlement %q, the call %q", er.CloseTxID, r.settlement)
	}
	// On chain: the funding outpoint is spent by that settlement (a
	// refund or a second settlement cannot spend it again), and the
	// payer's change is the pool less exactly what was acknowledged.
	spend, err := w.env.Chain.SpendOf(context.Background(), er.Channel.Outpoint, er.Channel.PkScript)
	if err != nil || spend == nil || spend.TxID.String() != r.settlement || spend.Confirmations < 1 {
		t.Fatalf("funding %s spent by %+v (%v), want the settlement %s", id, spend, err, r.settlement)
	}
	h, _ := chainhash.NewHashFromStr(r.settlement)
	tx, err := w.env.Chain.Tx(context.Background(), *h)
	if err != nil {
		t.Fatal(err)
	}
	change := er.Channel.CapacitySat - pr.AckedSat
	found := false
	for _, out := range tx.TxOut {
		if string(out.PkScript) == string(er.Channel.PayerScript) && out.Value == change {
			found = true
		}
	}
	if !found || len(tx.TxIn) < 1 || tx.TxIn[0].PreviousOutPoint != er.Channel.Outpoint {
		t.Fatalf("settlement %s does not return %d sat to the payer: %+v", r.settlement, change, tx)
	}
	t.Logf("channel %s: %d sat acknowledged across two members, settled once by %s", id, pr.AckedSat, r.settlement)
}

func openStore(t *testing.T, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
