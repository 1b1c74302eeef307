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

// TestSoakDishonestWithFaults: the soak's random faults (dropped
// transports, processes dying, the node restarting) with randomly
// dishonest peers: 50 calls where the payer is honest or cheats (replays
// an old payment, stops paying) against an honest payee, whose every
// acknowledged satoshi must settle; then 50 calls where the payee is
// honest or cheats (stops acknowledging, fakes its settlement) against an
// honest payer, whose pools must all come back but what it signed.
func TestSoakDishonestWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PAYSIP_SOAK_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Run("dishonest payers", func(t *testing.T) {
		rep := faulttest.Soak(t, faulttest.SoakConfig{Seed: seed, Calls: 50, MaxRestarts: 2,
			Payers: []faulttest.PayerBehaviour{faulttest.HonestPayer{}, faulttest.ReplayingPayer{}, faulttest.AbandoningPayer{}}})
		if rep.Payee.SettledSat == 0 {
			t.Fatalf("nothing settled: %+v", rep)
		}
	})
	t.Run("dishonest payees", func(t *testing.T) {
		// A mute payee is given up on in 2 s (the calls tick fast here).
		rep := faulttest.Soak(t, faulttest.SoakConfig{Seed: seed + 1, Calls: 50, MaxRestarts: 2, AckTimeout: 2 * time.Second,
			Payees: []faulttest.PayeeBehaviour{faulttest.HonestPayee{}, faulttest.MutePayee{}, faulttest.FakeClosePayee{}}})
		if rep.Payer.Channels == 0 {
			t.Fatalf("no pool: %+v", rep)
		}
	})
}
