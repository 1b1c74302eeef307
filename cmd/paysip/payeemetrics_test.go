package main

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads a Prometheus text exposition into name (with labels) ->
// value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestPayeeMetrics: 'paysip payee --metrics' serves /metrics; after a paid
// call of five ticks that the caller closes, the counters tell that call:
// every payment received was checked, stored and acknowledged, none
// refused, one settlement with its fee, no channel left open.
func TestPayeeMetrics(t *testing.T) {
	cw := startCallWorld(t, "--metrics", "127.0.0.1:0")
	m := regexp.MustCompile(`metrics at (http://\S+/metrics)`).FindStringSubmatch(cw.payee.out.String())
	if m == nil {
		t.Fatalf("payee did not say where its metrics are:\n%s", cw.payee.out)
	}
	url := m[1]
	before := scrape(t, url)
	if before["paysip_payee_payments_acked_total"] != 0 || before["paysip_payee_open_channels"] != 0 {
		t.Fatalf("metrics before any call: %v", before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cw.bin, append([]string{"call", "sip:tutor@paysip.test", "--wallet", "caller", "--sip-server", cw.sipAddr,
		"--seconds", "5", "--tick", "100ms", "--close", "--loopback"}, cw.common...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("call: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`call paid 5000 sat; channel closed, settlement [0-9a-f]{64}`).Match(out) {
		t.Fatalf("call output:\n%s", out)
	}
	var got map[string]float64
	for range 100 { // the session lets its channel go just after the close
		if got = scrape(t, url); got["paysip_payee_open_channels"] == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	received, acked := got["paysip_payee_payments_received_total"], got["paysip_payee_payments_acked_total"]
	if acked < 5 || received != acked {
		t.Errorf("received %v, acked %v payments; want the same, at least 5", received, acked)
	}
	if n := got["paysip_payee_payment_verification_seconds_count"]; n != received {
		t.Errorf("%v verifications timed for %v payments", n, received)
	}
	if n := got["paysip_payee_store_commit_seconds_count"]; n != acked {
		t.Errorf("%v store commits timed for %v acked payments", n, acked)
	}
	if s := got["paysip_payee_store_commit_seconds_sum"]; s <= 0 {
		t.Errorf("store commit seconds sum %v", s)
	}
	for k, v := range got {
		if strings.HasPrefix(k, "paysip_payee_payments_refused_total") && v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	if n := got["paysip_payee_settlements_total"]; n != 1 {
		t.Errorf("settlements %v, want 1", n)
	}
	if fee := got["paysip_payee_settlement_fees_sat_total"]; fee <= 0 || fee >= 5000 {
		t.Errorf("settlement fees %v sat", fee)
	}
	if open := got["paysip_payee_open_channels"]; open != 0 {
		t.Errorf("open channels %v after the call", open)
	}
}
