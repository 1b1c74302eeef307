package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
// 5,000/s and returns the rate at which they were answered, from sipp's
// statistics every second (successful calls over the seconds in which
// they came: a few REGISTERs lost on a loaded machine would otherwise
// make the run last until sipp's timeout), and sipp's failed count.
func sippRegister(b *testing.B, addr string, n, round int) (float64, int) {
	stats := filepath.Join(b.TempDir(), "stats.csv")
	cmd := exec.Command("sipp", "-sf", "../../interop/testdata/register_load.xml", "-i", "127.0.0.1", "-p", fmt.Sprint(freePort(b)),
		"-t", "u1", "-m", fmt.Sprint(n), "-r", "5000", "-timeout", "40s", "-timeout_error", "-nostdin",
		"-trace_stat", "-stf", stats, "-fd", "1", "-base_cseq", fmt.Sprint(round+1), addr)
	out, _ := cmd.CombinedOutput()
	failed := -1
	if m := failedRe.FindSubmatch(out); m != nil {
		fmt.Sscan(string(m[1]), &failed)
	}
	return statRate(b, stats), failed
}

// statRate reads sipp's -trace_stat file: successful calls per second
// from the first answer to the last.
func statRate(b *testing.B, path string) float64 {
	f, err := os.ReadFile(path)
	if err != nil {
		b.Fatalf("sipp statistics: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(f)), "\n")
	if len(lines) < 2 {
		return 0
	}
	head := strings.Split(lines[0], ";")
	col := func(name string) int {
		for i, h := range head {
			if h == name {
				return i
			}
		}
		b.Fatalf("no column %s in sipp statistics", name)
		return -1
	}
	elapsed, success := col("ElapsedTime(C)"), col("SuccessfulCall(C)")
	var t0, t1 float64
	var s0, s1 int
	first := true
	for _, l := range lines[1:] {
		f := strings.Split(l, ";")
		if len(f) <= max(elapsed, success) {
			continue
		}
		var s int
		fmt.Sscan(f[success], &s)
		t := sippSeconds(f[elapsed])
		if first || s == 0 {
			t0, s0, first = t, s, false
			continue
		}
		if s > s1 {
			t1, s1 = t, s
		}
	}
	if t1 <= t0 {
		return 0
	}
	return float64(s1-s0) / (t1 - t0)
}

// sippSeconds reads sipp's HH:MM:SS:mmm elapsed time.
func sippSeconds(v string) float64 {
	var h, m, s, ms int
	fmt.Sscanf(v, "%d:%d:%d:%d", &h, &m, &s, &ms)
	return float64(h*3600+m*60+s) + float64(ms)/1000
}
