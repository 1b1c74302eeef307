package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paysip/paysip/channel"
)

// paysipBin builds the binary once for the tests that run it as a user
// would.
func paysipBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "paysip-bin-*")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "paysip")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = &buildError{string(out), err}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestDemoScenarios runs 'paysip demo --json' for each scenario on its own
// regtest node and checks the on-chain arithmetic of its report.
func TestDemoScenarios(t *testing.T) {
	bin := paysipBin(t)
	for _, run := range []struct {
		scenario, transport string
		price               int64
	}{
		{"hangup", "datachannel", 60_000}, {"payer-vanishes", "datachannel", 60_000}, {"payee-vanishes", "datachannel", 60_000},
		{"hangup", "message", 60_000}, {"payer-vanishes", "message", 60_000},
		// Below 60,000 sat/min the first second is under the payee's
		// minimum payment: the first payment is the minimum.
		{"hangup", "datachannel", 30_000},
	} {
		sc := run.scenario
		t.Run(fmt.Sprintf("%s/%s/%d", sc, run.transport, run.price), func(t *testing.T) {
			t.Parallel()
			// A 30-second call (fast seconds) for the hangup scenario.
			seconds := int64(6)
			if sc == "hangup" && run.price == 60_000 {
				seconds = 30
			}
			cmd := exec.Command(bin, "demo", "--json", "--scenario", sc, "--seconds", fmt.Sprint(seconds), "--tick", "50ms",
				"--price", fmt.Sprint(run.price), "--transport", run.transport, "--datadir", t.TempDir(), "--block-interval", "0")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("demo: %v\n%s", err, stderr.String())
			}
			if strings.Contains(stderr.String(), "level=ERROR") {
				t.Errorf("the demo logged an error:\n%s", stderr.String())
			}
			var r demoReport
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("report %s: %v", out, err)
			}
			owed, _ := channel.Owed(run.price, seconds)
			if r.Scenario != sc || r.PriceSatPerMin != run.price || r.MinPaymentSat < 1000 || r.Confirmations < 1 || r.FundingFeeSat <= 0 || r.FundingSat < 2*owed {
				t.Fatalf("report %+v", r)
			}
			payerDelta, payeeDelta := r.Payer.BeforeSat-r.Payer.AfterSat, r.Payee.AfterSat-r.Payee.BeforeSat
			switch sc {
			case "hangup", "payer-vanishes":
				wantSeconds := seconds
				if sc == "payer-vanishes" {
					wantSeconds = 3
				}
				want, _ := channel.Owed(run.price, wantSeconds)
				payments := int(wantSeconds)
				if run.price < 60_000 {
					payments = int(want-1000)/int(run.price/60) + 1 // the minimum first, then a second at a time
				}
				// A payer that falls behind (a loaded machine) catches up in one
				// payment: at most one a second, never less than the total.
				if r.SecondsPaid != wantSeconds || r.Payments < 1 || r.Payments > payments || r.PaidSat != max(want, 1000) {
					t.Fatalf("paid %d sat for %d s in %d payments", r.PaidSat, r.SecondsPaid, r.Payments)
				}
				if r.SettlementTxID == "" || r.SettlementFeeSat == nil || *r.SettledPaidSat != r.PaidSat {
					t.Fatalf("settlement %+v", r)
				}
				if payerDelta != r.PaidSat+r.FundingFeeSat {
					t.Errorf("payer lost %d, want paid %d + funding fee %d", payerDelta, r.PaidSat, r.FundingFeeSat)
				}
				if payeeDelta != r.PaidSat-*r.SettlementFeeSat {
					t.Errorf("payee gained %d, want paid %d - settlement fee %d", payeeDelta, r.PaidSat, *r.SettlementFeeSat)
				}
			case "payee-vanishes":
				if r.RefundTxID == "" || r.RefundFeeSat == nil || r.SettlementTxID != "" {
					t.Fatalf("refund %+v", r)
				}
				if payerDelta != r.FundingFeeSat+*r.RefundFeeSat || payeeDelta != 0 {
					t.Errorf("payer lost %d (want fees %d + %d), payee gained %d", payerDelta, r.FundingFeeSat, *r.RefundFeeSat, payeeDelta)
				}
			}
		})
	}
}

// TestFaucetRefusedOffRegtest: the faucet says no on a real network.
func TestFaucetRefusedOffRegtest(t *testing.T) {
	out, err := exec.Command(paysipBin(t), "faucet", "--datadir", t.TempDir(), "--network", "signet", "tb1qxyz", "1000").CombinedOutput()
	if err == nil || !contains(string(out), "regtest only") {
		t.Fatalf("faucet on signet: %v: %s", err, out)
	}
}
