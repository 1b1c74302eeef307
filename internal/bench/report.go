package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints the result as the table 'paysip bench' shows, with
// the targets beside the figures.
func WriteTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "machine\t%d CPUs (GOMAXPROCS %d), %s, %s, btcec %s, secp256k1 %s\t\n", r.Machine.CPUs, r.Machine.GOMAXPROCS, r.Machine.CPUModel, r.Machine.Go, r.Machine.Btcec, r.Machine.Secp256k1)
	fmt.Fprintf(tw, "figure\tvalue\ttarget\n")
	fmt.Fprintf(tw, "verify_ceiling_per_s\t%.0f\t(raw ECDSA verifications/s, %d cores, same run)\n", r.VerifyCeilingPerS, r.VerifyWorkers)
	for _, st := range r.Throughput {
		fmt.Fprintf(tw, "  payee payments/s at %d channels\t%.0f\t\n", st.Channels, st.PaymentsPerS)
	}
	fmt.Fprintf(tw, "payee_payments_per_s\t%.0f\t(%d channels)\n", r.PayeePaymentsPerS, r.PayeeChannels)
	fmt.Fprintf(tw, "payee_ratio\t%.2f\t>= 0.80 (ceilings %.0f, windows around the throughput's)\n", r.PayeeRatio, r.VerifyCeilings)
	fmt.Fprintf(tw, "payee_ratio_cpu\t%.2f\t(per CPU second: %.0f payments, %.0f verifications)\n", r.PayeeRatioCPU, r.PayeePaymentsPerCPUS, r.VerifyCeilingPerCPUS)
	fmt.Fprintf(tw, "keyed_verify_ceiling_per_s\t%.0f\t(with the key's precomputed verifier, as the payee; same windows: %.0f)\n", r.KeyedVerifyCeilingPerS, r.KeyedVerifyCeilings)
	fmt.Fprintf(tw, "payee_ratio_keyed\t%.2f\t(payee over the keyed ceiling: its overhead; per CPU second %.2f)\n", r.PayeeRatioKeyed, r.PayeeRatioKeyedCPU)
	fmt.Fprintf(tw, "rtt_p50_ms\t%.2f\t< 1 ms (%d calls)\n", r.RTTP50ms, r.RTTCalls)
	fmt.Fprintf(tw, "rtt_p99_ms\t%.2f\t< 5 ms\n", r.RTTP99ms)
	fmt.Fprintf(tw, "  disk fsync p50 / p99 (ms)\t%.2f / %.2f\t(4 KiB page, one every 5 ms: the floor under a durable ack)\n", r.DiskFsyncP50ms, r.DiskFsyncP99ms)
	for _, st := range r.CallSteps {
		fmt.Fprintf(tw, "  %d calls\t%d late, %d lost, audio %.2f%% dropped, %d frames sent late, %d skipped\tpayee %.0f%% CPU, %d KiB; payers %.0f%% CPU; rtt p50/p99 %.1f/%.1f ms\n",
			st.Calls, st.LatePayments, st.CallsLost, st.AudioDropPct, st.AudioSentLate, st.AudioSkipped, st.PayeeCPUPct, st.PayeeRSSKiB, st.PayerCPUPct, st.RTTP50ms, st.RTTP99ms)
	}
	fmt.Fprintf(tw, "concurrent_calls\t%d\t%d (asked), target 1000\n", r.ConcurrentCalls, r.CallsTarget)
	fmt.Fprintf(tw, "late_payments\t%d\t0\n", r.LatePayments)
	fmt.Fprintf(tw, "cpu_per_call_pct\t%.3f\t(%% of one core)\n", r.CPUPerCallPct)
	fmt.Fprintf(tw, "mem_per_call_kib\t%.0f\t\n", r.MemPerCallKiB)
	if r.DemoFirstPaidSecS > 0 {
		fmt.Fprintf(tw, "demo_first_paid_second_s\t%.2f\t~1.7 s (keep)\n", r.DemoFirstPaidSecS)
	}
	fmt.Fprintf(tw, "window\t%.0f s each\ttotal %.0f s, load average %v (start, end)\n", r.DurationS, r.TotalS, r.LoadAvg)
	return tw.Flush()
}
