package interop

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSippRegister measures REGISTER throughput: sipp sends b.N
// REGISTERs (each a new user, UDP) at up to 6,000/s (what two shared cores sustain without loss here) to a real
// 'paysip serve --open', and the benchmark reports REGISTER/s and sipp's
// failed count. Figures are printed, not asserted.
//
//	go test ./interop -run X -bench SippRegister -benchtime 20000x
func BenchmarkSippRegister(b *testing.B) {
	requireTool(b, "sipp", "sip-tester")
	dir := b.TempDir()
	bin := filepath.Join(dir, "paysip")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/paysip").CombinedOutput(); err != nil {
		b.Fatalf("build: %v %s", err, out)
	}
	port := freePort(b, "udp")
	// sipp is one source sending far above the per-source limits, each
	// REGISTER a UDP transaction held 32 s (Timer J): exempt it and raise
	// the transaction cap, to measure the registrar (the limits have their
	// own tests in sipserver).
	srv := exec.Command(bin, "serve", "--open", "--datadir", filepath.Join(dir, "data"), "--domain", domain,
		"--sip-addr", fmt.Sprintf("127.0.0.1:%d", port), "--http-addr", "127.0.0.1:0",
		"--limit-exempt", "127.0.0.1", "--max-transactions", "1000000")
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { syscall.Kill(-srv.Process.Pid, syscall.SIGINT); srv.Wait() }()
	for i := 0; i < 600 && !strings.Contains(logs.String(), "paysip serving"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "paysip serving") {
		b.Fatalf("serve did not start:\n%s", logs.String())
	}
	b.ResetTimer()
	start := time.Now()
	cmd := exec.Command("sipp", "-sf", "testdata/register_load.xml", "-i", "127.0.0.1", "-p", fmt.Sprint(freePort(b, "udp")),
		"-t", "u1", "-m", fmt.Sprint(b.N), "-r", "6000", "-timeout", "60s", "-timeout_error", "-nostdin",
		fmt.Sprintf("127.0.0.1:%d", port))
	out, _ := cmd.CombinedOutput()
	elapsed := time.Since(start)
	b.StopTimer()
	failed := 0
	if m := regexp.MustCompile(`Failed call\s+\|\s+\d+\s+\|\s+(\d+)`).FindSubmatch(out); m != nil {
		fmt.Sscan(string(m[1]), &failed)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "REGISTER/s")
	b.ReportMetric(float64(failed), "failed")
}
