package clustertest

import (
	"fmt"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// BenchmarkRegisterCluster measures REGISTER throughput (sipp, UDP, each
// REGISTER a new user, 'serve --open', bindings persisted to PostgreSQL)
// of one serve node alone and of two nodes behind Kamailio's dispatcher
// (deploy/kamailio/kamailio.cfg), in the same run, alternating, b.N
// REGISTERs per round, two rounds each. Figures are printed, not
// asserted: on a 2-core machine sipp, Kamailio, the nodes and PostgreSQL
// share the cores, so the ratio matters, not the absolute rate.
//
//	go test ./internal/clustertest -run X -bench RegisterCluster -benchtime 20000x
func BenchmarkRegisterCluster(b *testing.B) {
	requireTool(b, "sipp", "sip-tester")
	requireTool(b, "kamailio", "kamailio")
	if b.N == 1 {
		return // the testing package's first probe run: the real one follows
	}
	w := newWorld(b)
	open := []string{"--open", "--max-transactions", "1000000"}
	alone := w.startServe("alone", pgURL(b), open...)
	db := pgURL(b)
	n1, n2 := w.startServe("node-1", db, open...), w.startServe("node-2", db, open...)
	k := startEdge(b, n1, n2)
	time.Sleep(2 * time.Second) // the dispatcher's first probes
	best := map[string]float64{}
	for round := 0; round < 2; round++ {
		for _, target := range []struct {
			name, addr string
		}{{"one node", alone.sipAddr()}, {"two nodes behind kamailio", k.addr()}} {
			rate, failed := sippRegister(b, target.addr, b.N, round)
			b.Logf("round %d, %s: %.0f REGISTER/s, %d failed", round+1, target.name, rate, failed)
			if rate > best[target.name] {
				best[target.name] = rate
			}
		}
	}
	b.ReportMetric(best["one node"], "REGISTER/s-one-node")
	b.ReportMetric(best["two nodes behind kamailio"], "REGISTER/s-two-nodes")
}

var failedRe = regexp.MustCompile(`Failed call\s+\|\s+\d+\s+\|\s+(\d+)`)

// sippRegister sends n REGISTERs (users distinct per round) at up to
// 3,000/s and returns the rate and sipp's failed count.
func sippRegister(b *testing.B, addr string, n, round int) (float64, int) {
	start := time.Now()
	cmd := exec.Command("sipp", "-sf", "../../interop/testdata/register_load.xml", "-i", "127.0.0.1", "-p", fmt.Sprint(freePort(b)),
		"-t", "u1", "-m", fmt.Sprint(n), "-r", "3000", "-timeout", "120s", "-timeout_error", "-nostdin",
		"-base_cseq", fmt.Sprint(round+1), addr)
	out, _ := cmd.CombinedOutput()
	elapsed := time.Since(start)
	failed := -1
	if m := failedRe.FindSubmatch(out); m != nil {
		fmt.Sscan(string(m[1]), &failed)
	}
	return float64(n) / elapsed.Seconds(), failed
}
