package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
	for _, run := range []struct{ scenario, transport string }{
		{"hangup", "datachannel"}, {"payer-vanishes", "datachannel"}, {"payee-vanishes", "datachannel"},
		{"hangup", "message"}, {"payer-vanishes", "message"},
	} {
		sc := run.scenario
		t.Run(sc+"/"+run.transport, func(t *testing.T) {
			t.Parallel()
			// A 30-second call (fast seconds) for the hangup scenario.
			seconds := int64(6)
			if sc == "hangup" {
				seconds = 30
			}
			cmd := exec.Command(bin, "demo", "--json", "--scenario", sc, "--seconds", fmt.Sprint(seconds), "--tick", "50ms",
				"--transport", run.transport, "--datadir", t.TempDir())
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("demo: %v", err)
			}
			var r demoReport
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("report %s: %v", out, err)
			}
			if r.Scenario != sc || r.PriceSatPerMin != 60_000 || r.Confirmations < 1 || r.FundingFeeSat <= 0 || r.FundingSat != 1_000_000 {
				t.Fatalf("report %+v", r)
			}
			payerDelta, payeeDelta := r.Payer.BeforeSat-r.Payer.AfterSat, r.Payee.AfterSat-r.Payee.BeforeSat
			switch sc {
			case "hangup", "payer-vanishes":
				wantSeconds := seconds
				if sc == "payer-vanishes" {
					wantSeconds = 3
				}
				if r.SecondsPaid != wantSeconds || r.Payments != int(wantSeconds) || r.PaidSat != wantSeconds*1000 {
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
