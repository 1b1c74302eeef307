package main

import (
	"context"
	"encoding/json"
	"math"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/paysip/paysip/internal/bench"
)

// TestBenchJSON runs 'paysip bench --json' at a tiny scale and checks that
// the object is complete and consistent: every figure the issue names is
// there, the ratio is the two rates divided, the steps add up to the
// totals, the payee's own metrics count at least the payments the callers
// saw acknowledged. Timings are not judged (they are the bench's output).
func TestBenchJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("bench: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, paysipBin(t), "bench", "--json", "--channels", "3", "--calls", "2", "--duration", "1500ms").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("paysip bench: %v\n%s\n%s", err, out, stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"verify_ceiling_per_s", "payee_payments_per_s", "payee_ratio", "rtt_p50_ms", "rtt_p99_ms",
		"concurrent_calls", "late_payments", "cpu_per_call_pct", "mem_per_call_kib", "demo_first_paid_second_s"} {
		if _, ok := raw[k].(float64); !ok {
			t.Errorf("%s missing or not a number: %v", k, raw[k])
		}
	}
	var r bench.Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	positive := map[string]float64{"verify_ceiling_per_s": r.VerifyCeilingPerS, "payee_payments_per_s": r.PayeePaymentsPerS,
		"rtt_p50_ms": r.RTTP50ms, "disk_fsync_p50_ms": r.DiskFsyncP50ms, "cpu_per_call_pct": r.CPUPerCallPct, "demo_first_paid_second_s": r.DemoFirstPaidSecS}
	for k, v := range positive {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v", k, v)
		}
	}
	if want := r.PayeePaymentsPerS / r.VerifyCeilingPerS; math.Abs(r.PayeeRatio-want) > 1e-9*want {
		t.Errorf("payee_ratio %v, payee_payments_per_s / verify_ceiling_per_s = %v", r.PayeeRatio, want)
	}
	if want := r.PayeePaymentsPerCPUS / r.VerifyCeilingPerCPUS; !(want > 0) || math.Abs(r.PayeeRatioCPU-want) > 1e-9*want {
		t.Errorf("payee_ratio_cpu %v, per CPU second %v / %v", r.PayeeRatioCPU, r.PayeePaymentsPerCPUS, r.VerifyCeilingPerCPUS)
	}
	if len(r.VerifyCeilings) != 2 || math.Abs((r.VerifyCeilings[0]+r.VerifyCeilings[1])/2-r.VerifyCeilingPerS) > 1e-9*r.VerifyCeilingPerS {
		t.Errorf("verify_ceiling_per_s %v is not the mean of the windows around the throughput's %v", r.VerifyCeilingPerS, r.VerifyCeilings)
	}
	if got := len(r.Throughput); got != 2 || r.Throughput[0].Channels != 1 || r.Throughput[1].Channels != 3 {
		t.Fatalf("throughput levels %+v, want 1 and 3 channels", r.Throughput)
	}
	for _, st := range r.Throughput {
		if st.ChannelsLost != 0 {
			t.Errorf("throughput level %+v: the payee closed channels", st)
		}
	}
	top := r.Throughput[1]
	if top.PaymentsPerS != r.PayeePaymentsPerS || top.Payments != r.ThroughputPayments || top.Payments < 1 ||
		math.Abs(float64(top.Payments)/top.Seconds-top.PaymentsPerS) > 1e-6*top.PaymentsPerS {
		t.Errorf("top throughput level %+v against payee_payments_per_s %v", top, r.PayeePaymentsPerS)
	}
	if r.RTTP50ms > r.RTTP99ms || r.RTTCalls != 2 || len(r.RTTSamplesMs) == 0 || !slices.IsSorted(r.RTTSamplesMs) ||
		r.RTTSamplesMs[0] > r.RTTP50ms || r.RTTSamplesMs[len(r.RTTSamplesMs)-1] < r.RTTP99ms {
		t.Errorf("round trip: p50 %v p99 %v at %d calls, samples %v", r.RTTP50ms, r.RTTP99ms, r.RTTCalls, r.RTTSamplesMs)
	}
	if len(r.CallSteps) != 1 || r.CallSteps[0].Calls != 2 || r.CallsTarget != 2 {
		t.Fatalf("call steps %+v", r.CallSteps)
	}
	st := r.CallSteps[0]
	if r.LatePayments != st.LatePayments || r.ConcurrentCalls > r.CallsTarget || (r.ConcurrentCalls == 2) != (st.LatePayments == 0 && st.CallsLost == 0 && st.AudioDropPct < 1) {
		t.Errorf("concurrent_calls %d, late_payments %d for step %+v", r.ConcurrentCalls, r.LatePayments, st)
	}
	if st.Payments < 1 || st.AudioFrames < 1 || st.PayeeRSSKiB <= r.PayeeBaseRSSKiB/2 {
		t.Errorf("calls step %+v (payee base RSS %d KiB)", st, r.PayeeBaseRSSKiB)
	}
	if want := float64(st.PayeeRSSKiB-r.PayeeBaseRSSKiB) / 2; r.MemPerCallKiB != want {
		t.Errorf("mem_per_call_kib %v, want %v", r.MemPerCallKiB, want)
	}
	if m := r.PayeeMetrics; m.Acked < st.Payments || m.Received < m.Acked || m.Refused != 0 || !(m.VerifyMeanMs > 0) || !(m.StoreMeanMs > 0) {
		t.Errorf("payee metrics %+v for %d payments acknowledged in the window", m, st.Payments)
	}
	if r.Machine.CPUs < 1 || r.Machine.Btcec == "" || r.Machine.Secp256k1 == "" {
		t.Errorf("machine %+v", r.Machine)
	}
}
