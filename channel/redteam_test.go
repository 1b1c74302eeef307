package channel

import (
	"errors"
	"testing"

	"github.com/paysip/paysip/paywire"
)

// TestRedteamResumeFirstPaymentLimit: on resume of a channel where nothing
// was acknowledged yet, the payee's terms size the next (first) payment.
// A payee asking most of the pool as its minimum first payment is refused
// as it would be for a new channel; terms that a new channel would accept
// still resume.
func TestRedteamResumeFirstPaymentLimit(t *testing.T) {
	e := newEnv(t)
	e.open()
	rec := e.payer.Record()
	for _, c := range []struct {
		name    string
		minPay  int64
		refused bool
	}{{"most of the pool", testCapacity - 1000, true}, {"ten seconds of call", 10_000, false}} {
		t.Run(c.name, func(t *testing.T) {
			p, err := ResumePayer(testPayerConfig(), rec)
			if err != nil {
				t.Fatal(err)
			}
			p.ObserveTip(testTip)
			p.Start()
			terms := testTerms()
			terms.MinChannelSat, terms.MinPaymentSat = testCapacity, c.minPay
			m := terms.Wire(1)
			m.Challenge = testChallenge
			effs, err := p.Handle(m)
			if !c.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadTerms) || p.State() != PayerFailed {
				t.Fatalf("err %v, state %v", err, p.State())
			}
			if em, ok := effs[0].(Send).Msg.(*paywire.Error); !ok || em.Code != paywire.CodeBadTerms || em.Expected == nil || *em.Expected != 10_000 {
				t.Fatalf("payee told %+v", effs[0])
			}
		})
	}
}
