package clustertest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeRestartKeepsRegistrations (issue 14, test 3): a serve node on
// SQLite behind the Kamailio edge is killed and started again; a call to
// a payee registered before the restart goes through and is paid and
// settled on chain, without the payee registering again.
func TestServeRestartKeepsRegistrations(t *testing.T) {
	requireTool(t, "kamailio", "kamailio kamailio-websocket-modules")
	w := newWorld(t)
	db := filepath.Join(t.TempDir(), "paysip.db")
	w.addAccount(db, "tutor")
	node := w.startServe("serve", db)
	k := startEdge(t, node)
	// Registration lasts 300 s (refreshed at 240 s): none during the test.
	payee := w.payee("payee", "tutor", k.addr(), t.TempDir())
	callerDir := t.TempDir()
	w.fundCaller(callerDir)

	node.kill() // a crash: only what the store holds survives
	w.restart(node)
	if !strings.Contains(node.out.String(), "bindings loaded from the store") {
		t.Fatal("the restarted node loaded no bindings")
	}
	r, err := w.call(callerDir, "tutor", k.addr(), "--seconds", "3", "--close")
	if err != nil || r.paid != 3000 || r.settlement == "" {
		t.Fatalf("call after the restart: %v (paid %d, settlement %q)\n%s", err, r.paid, r.settlement, r.out)
	}
	w.confirmed(r.settlement)
	payee.waitFor(t, "ended: paid 3000 sat", 30*time.Second)
	if strings.Contains(node.out.String(), "msg=registered") {
		t.Fatalf("the payee registered again after the restart:\n%s", node.out.String())
	}
}
