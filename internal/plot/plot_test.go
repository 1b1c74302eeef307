package plot

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/paysip/paysip/internal/bench"
)

// decodePNG checks path is a PNG of the figure's size.
func decodePNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Fatalf("%s: %v", path, b)
	}
}

func TestAll(t *testing.T) {
	r := &bench.Result{
		VerifyCeilingPerS: 14000, VerifyCeilingPerCPUS: 7000, VerifyWorkers: 2,
		Throughput: []bench.ThroughputStep{{Channels: 1, PaymentsPerS: 900, PaymentsPerCPUS: 2000}, {Channels: 10, PaymentsPerS: 5000, PaymentsPerCPUS: 4000},
			{Channels: 100, PaymentsPerS: 9000, PaymentsPerCPUS: 5000}, {Channels: 1000, PaymentsPerS: 10000, PaymentsPerCPUS: 5500}},
		RTTCalls: 100, RTTP50ms: 0.9, RTTP99ms: 3.5, RTTSamplesMs: []float64{0.5, 0.7, 0.8, 0.9, 0.9, 1.0, 1.2, 2.0, 3.5, 40},
		CallSteps: []bench.CallStep{{Calls: 100, PayeeCPUPct: 20, PayerCPUPct: 30}, {Calls: 250, PayeeCPUPct: 50, PayerCPUPct: 70, LatePayments: 3, AudioDropPct: 2}},
	}
	dir := t.TempDir()
	if err := All(r, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"payee-throughput.png", "payee-ratio.png", "rtt.png", "calls.png"} {
		decodePNG(t, filepath.Join(dir, name))
	}
	if err := All(&bench.Result{}, t.TempDir()); err == nil {
		t.Fatal("an empty result drew figures")
	}
}

func TestSIP(t *testing.T) {
	s := &SIPRuns{
		Register: []SIPPoint{{Server: "paysip", Round: 1, Offered: 3000, Achieved: 3000}, {Server: "paysip", Round: 1, Offered: 9000, Achieved: 8800},
			{Server: "kamailio", Round: 1, Offered: 3000, Achieved: 3000}, {Server: "kamailio", Round: 1, Offered: 9000, Achieved: 9000}},
		Proxy: []SIPPoint{{Server: "paysip", Round: 1, Offered: 1000, Achieved: 1000}, {Server: "kamailio", Round: 1, Offered: 1000, Achieved: 1000}},
	}
	dir := t.TempDir()
	if err := SIP(s, dir); err != nil {
		t.Fatal(err)
	}
	decodePNG(t, filepath.Join(dir, "sip-register.png"))
	decodePNG(t, filepath.Join(dir, "sip-proxy.png"))
	if err := SIP(&SIPRuns{}, t.TempDir()); err == nil {
		t.Fatal("no runs drew figures")
	}
}
