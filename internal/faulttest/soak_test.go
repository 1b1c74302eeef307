package faulttest_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/paysip/paysip/internal/faulttest"
)

// TestSoak: 100 paid calls one after the other on one real regtest node,
// each with a random fault (none, a dropped transport, the payer or the
// payee dying and starting again on its files, the node restarting), the
// watchers running; at the end every acknowledged satoshi is settled for
// the payee and every other pool refunded to the payer, checked on chain.
// The seed is logged; PAYSIP_SOAK_SEED replays a run, PAYSIP_SOAK_CALLS
// changes its length.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PAYSIP_SOAK_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	calls := 100
	if v := os.Getenv("PAYSIP_SOAK_CALLS"); v != "" {
		calls, _ = strconv.Atoi(v)
	}
	rep := faulttest.Soak(t, faulttest.SoakConfig{Seed: seed, Calls: calls})
	if rep.Payer.Channels+rep.NeverFunded == 0 || rep.Payee.SettledSat == 0 {
		t.Fatalf("soak did nothing: %+v", rep)
	}
	if rep.Payer.SettledSat != rep.Payee.SettledSat {
		t.Fatalf("payer's pools paid %d on chain, payee's channels settled %d", rep.Payer.SettledSat, rep.Payee.SettledSat)
	}
	if rep.Payee.SettledSat < rep.AckedSat {
		t.Fatalf("settled %d < acknowledged %d", rep.Payee.SettledSat, rep.AckedSat)
	}
}
