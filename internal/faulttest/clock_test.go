package faulttest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/sipauth"
)

// What the clock can and cannot do to paysip:
//
//   - Call time (agent.PayerSession.Meter, the payee's watchdog) is
//     measured with time.Now/time.Since from one start: Go reads the
//     monotonic clock there, so a step of the wall clock (NTP, an operator,
//     a VM resumed) changes nothing; only the elapsed value the meter is
//     given could be wrong, and TestClockJumpMeter checks the meter stays
//     within its caps whatever it is given.
//   - Lock times are block heights, never wall time: the chain's clock.
//   - The wall clock matters where a time leaves the process: digest nonces
//     carry their issue time (sipauth), TestClockJumpDigestNonce.
//   - store's updated_at is informational (wall time, no decision uses it).
//
// A real jump of the system's wall clock cannot be made in a test (it is
// the machine's, shared; a time namespace offsets only the monotonic and
// boot clocks), hence the injected times here.

// TestClockJumpMeter feeds the payer's and the payee's meters elapsed
// times that jump forward (a year) and backward (negative): the payer
// never owes more than its budget, never a negative amount, and never less
// after a backward jump than the agent has already paid (the agent pays
// only when the target exceeds what it paid); the payee never deems a
// payment due beyond what the price times the elapsed time allows.
func TestClockJumpMeter(t *testing.T) {
	const price = 60_000
	p := meter.Payer{PriceSatPerMin: price, Tick: time.Second, BudgetSat: 30_000}
	e := meter.Payee{PriceSatPerMin: price, Tick: time.Second, Grace: 3 * time.Second}
	paid := int64(0)
	for _, elapsed := range []time.Duration{
		0, 5 * time.Second, -time.Hour, 6 * time.Second, 365 * 24 * time.Hour, -365 * 24 * time.Hour,
		time.Duration(1<<63 - 1), time.Duration(-1 << 63),
	} {
		_, target, err := p.Target(elapsed)
		if err != nil && !errors.Is(err, meter.ErrBudget) {
			// A negative elapsed is refused (the agent's Meter then ends
			// the call): safe, never an amount.
			if elapsed >= 0 {
				t.Errorf("elapsed %v: %v", elapsed, err)
			}
			continue
		}
		if target < 0 || target > p.BudgetSat {
			t.Errorf("elapsed %v: target %d outside [0, budget %d]", elapsed, target, p.BudgetSat)
		}
		if target > paid {
			paid = target // what the agent pays: only ever up
		}
		due := e.Due(elapsed)
		maxDue := int64(0)
		if elapsed > 0 {
			maxDue = (int64(elapsed/time.Second) + 1) * price / 60
		}
		if due < 0 || due > maxDue {
			t.Errorf("elapsed %v: payee deems %d due, at most %d", elapsed, due, maxDue)
		}
	}
	if paid != p.BudgetSat {
		t.Errorf("paid %d after a forward jump of a year; the budget %d is the cap", paid, p.BudgetSat)
	}
}

// TestClockJumpDigestNonce: the server's nonces carry their wall-clock
// issue time. A jump forward past the nonce lifetime, or backward by more
// than a minute, makes an outstanding nonce stale (not a wrong password:
// RFC 3261 22.4 / RFC 2617 3.2.1 stale=true lets the client retry without
// asking its user), and a fresh challenge at the new time works at once.
func TestClockJumpDigestNonce(t *testing.T) {
	ha1 := sipauth.HA1("MD5", "alice", "paysip.test", "pw")
	v := &sipauth.Verifier{Realm: "paysip.test", Secret: []byte("0123456789abcdef0123456789abcdef"),
		Lookup: func(user, alg string) (string, bool) { return ha1, user == "alice" }}
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	answer := func(issued time.Time) string {
		c, err := digest.ParseChallenge(v.Challenges("192.0.2.1", issued, false)[0])
		if err != nil {
			t.Fatal(err)
		}
		cred, err := digest.Digest(c, digest.Options{Method: sip.MESSAGE.String(), URI: "sip:bitcoin@paysip.test", Username: "alice", Password: "pw", Count: 1, Cnonce: "c0ffee"})
		if err != nil {
			t.Fatal(err)
		}
		return cred.String()
	}
	for _, jump := range []time.Duration{time.Hour, 6 * time.Minute, -2 * time.Minute, -24 * time.Hour} {
		t.Run(fmt.Sprint(jump), func(t *testing.T) {
			old := answer(t0)
			if u, err := v.Verify(sipauth.Request{Authorization: old, Method: "MESSAGE", URI: "sip:bitcoin@paysip.test", Client: "192.0.2.1"}, t0.Add(time.Second)); err != nil || u != "alice" {
				t.Fatalf("before the jump: %q %v", u, err)
			}
			now := t0.Add(jump)
			old = answer(t0) // another nonce of before the jump, never used
			if _, err := v.Verify(sipauth.Request{Authorization: old, Method: "MESSAGE", URI: "sip:bitcoin@paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, sipauth.ErrStale) {
				t.Fatalf("after a jump of %v: %v, want ErrStale", jump, err)
			}
			if u, err := v.Verify(sipauth.Request{Authorization: answer(now), Method: "MESSAGE", URI: "sip:bitcoin@paysip.test", Client: "192.0.2.1"}, now.Add(time.Second)); err != nil || u != "alice" {
				t.Fatalf("fresh nonce after the jump: %q %v", u, err)
			}
		})
	}
}
