package channel

import (
	"errors"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/txbuild"
)

// TestPayerLimits: terms a hostile payee could use to make the payer lock
// more, for longer, or pay more than its user allowed are refused at once,
// with an error message the payee can read, before anything is prepared
// (no TermsReceived, so no funding is even built).
func TestPayerLimits(t *testing.T) {
	cases := []struct {
		name   string
		cfg    func(*PayerConfig)
		terms  func(*Terms)
		tip    uint32
		expect int64
	}{
		{"price above the ceiling", nil, func(t *Terms) { t.PriceSatPerMin = 60_000_000_000 }, testTip, testPrice},
		{"no price ceiling set", func(c *PayerConfig) { c.MaxPriceSatPerMin = 0 }, nil, testTip, -1},
		{"minimum pool above the user's limit", nil, func(t *Terms) { t.MinChannelSat = testCapacity + 1 }, testTip, testCapacity},
		{"no pool limit set", func(c *PayerConfig) { c.MaxCapacitySat = 0 }, nil, testTip, -1},
		{"first payment above the budget", func(c *PayerConfig) { c.MaxFirstPaymentSat = 999 }, nil, testTip, 999},
		{"first payment a large part of the pool", nil, func(t *Terms) { t.MinPaymentSat = 90_000 }, testTip, 10_000},
		{"refund window half a billion blocks away", nil, func(t *Terms) {
			t.MinExpiryHeight, t.MaxExpiryHeight = 499_999_999, 499_999_999
		}, testTip, testTip + DefaultMaxLockBlocks},
		{"refund window past the user's lock limit", func(c *PayerConfig) { c.MaxLockBlocks = 10 }, nil, testTip, testTip + 10},
		{"chain height unknown", nil, nil, 0, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testPayerConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			p := NewPayer(cfg)
			p.ObserveTip(c.tip)
			p.Start()
			terms := testTerms()
			if c.terms != nil {
				c.terms(&terms)
			}
			effs, err := p.Handle(terms.Wire(1))
			if !errors.Is(err, ErrBadTerms) {
				t.Fatalf("err %v, want ErrBadTerms", err)
			}
			if p.State() != PayerFailed || len(effs) != 1 {
				t.Fatalf("state %v, effects %v", p.State(), effs)
			}
			m, ok := effs[0].(Send).Msg.(*paywire.Error)
			if !ok || m.Reason == "" {
				t.Fatalf("no readable error sent: %+v", effs[0])
			}
			if c.expect >= 0 && (m.Expected == nil || *m.Expected != c.expect) {
				t.Fatalf("expected %v, want %d", m.Expected, c.expect)
			}
			if _, err := p.Fund(FundRequest{}); !errors.Is(err, ErrUnexpected) {
				t.Fatalf("Fund after refusal: %v", err)
			}
		})
	}
}

// TestPayerFundCapped: the capacity the payer's own side chooses is capped
// by the user's limit too.
func TestPayerFundCapped(t *testing.T) {
	e := newEnv(t)
	e.capacity = testCapacity + 1
	err := e.by("payer")(e.payer.Start())
	if !errors.Is(err, ErrBadTerms) || e.refundStored != nil || len(e.broadcast) != 0 {
		t.Fatalf("err %v, refund %v, broadcasts %d", err, e.refundStored, len(e.broadcast))
	}
}

// TestStaleRefundWindow: a payer that lets the chain move on between the
// terms and its refund request, or between the signed refund and the
// funding, is refused: otherwise it could be served and take its refund
// at once.
func TestStaleRefundWindow(t *testing.T) {
	t.Run("refund request", func(t *testing.T) {
		e := newEnv(t)
		e.payee.ObserveTip(testTip + 24) // the terms said testTip+24 at the earliest
		err := e.by("payer")(e.payer.Start())
		if !errors.Is(err, ErrRefundLockTooNear) || e.refundStored != nil {
			t.Fatalf("err %v, refund stored %v", err, e.refundStored != nil)
		}
		if e.payee.State() != PayeeFailed {
			t.Fatalf("payee %v", e.payee.State())
		}
	})
	t.Run("funded", func(t *testing.T) {
		e := newEnv(t)
		e.before = func(side string, ef Effect) {
			if s, ok := ef.(Send); ok && side == "payer" {
				if _, ok := s.Msg.(*paywire.Funded); ok {
					// The payer held its funding back while blocks came.
					e.payee.ObserveTip(testTip + 24 - testMinLockAhead + 1)
				}
			}
		}
		err := e.by("payer")(e.payer.Start())
		if !errors.Is(err, ErrRefundLockTooNear) || e.opened || e.payee.State() != PayeeFailed {
			t.Fatalf("err %v, opened %v, payee %v", err, e.opened, e.payee.State())
		}
	})
	t.Run("funding accepted late", func(t *testing.T) {
		e := newEnv(t)
		e.before = func(side string, ef Effect) {
			if _, ok := ef.(FundingReceived); ok {
				// The funding waited for a confirmation while blocks came.
				e.payee.ObserveTip(testTip + 24)
			}
		}
		err := e.by("payer")(e.payer.Start())
		if !errors.Is(err, ErrRefundLockTooNear) || e.opened {
			t.Fatalf("err %v, opened %v", err, e.opened)
		}
	})
}

// TestFundingTwoPoolOutputs: a funding paying the pool twice is refused by
// the payee (and by the payer's own Fund): the two sides could otherwise
// disagree on which output is the channel.
func TestFundingTwoPoolOutputs(t *testing.T) {
	e := newEnv(t)
	tx := e.fundingTx(testCapacity)
	tx.TxOut = append(tx.TxOut, wire.NewTxOut(testCapacity, tx.TxOut[0].PkScript))
	if _, err := fundingOutput(tx, 0, tx.TxOut[0].PkScript); !errors.Is(err, ErrFundingScript) {
		t.Fatalf("err %v", err)
	}
	if _, err := fundingOutput(tx, 2, tx.TxOut[0].PkScript); !errors.Is(err, ErrFundingScript) {
		t.Fatalf("err %v", err)
	}
}

// TestResumeProof: a resume is served only to the holder of the channel's
// payer key; a proof for another challenge or by another key is refused.
func TestResumeProof(t *testing.T) {
	e := newEnv(t)
	e.open()
	if err := e.pay(2000); err != nil {
		t.Fatal(err)
	}
	id := e.payee.Channel().ID()
	start := func() *Payee {
		p, _ := NewPayee(testPayeeConfig())
		if _, err := p.Handle(&paywire.Hello{Header: paywire.Header{V: 1}, Versions: []int{1}, Resume: id}); err != nil {
			t.Fatal(err)
		}
		effs, err := p.Resume(e.payeeStore, key("payee channel"), testChallenge)
		if err != nil {
			t.Fatal(err)
		}
		if m := effs[0].(Send).Msg.(*paywire.Terms); len(m.Challenge) != paywire.ChallengeSize {
			t.Fatalf("terms without challenge: %+v", m)
		}
		return p
	}
	payeeKey := e.payeeStore.Channel.PayeeKey.SerializeCompressed()
	for name, sig := range map[string][]byte{
		"another key":       ecdsa.Sign(key("thief"), digest(id, testChallenge, payeeKey)).Serialize(),
		"another challenge": ecdsa.Sign(key("payer channel"), digest(id, make([]byte, 32), payeeKey)).Serialize(),
		"garbage":           {0x30, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			p := start()
			effs, err := p.Handle(&paywire.ResumeProof{Header: paywire.Header{V: 1}, ChannelID: id, Sig: sig})
			if !errors.Is(err, ErrResume) || p.State() != PayeeFailed {
				t.Fatalf("err %v state %v", err, p.State())
			}
			if m := effs[0].(Send).Msg.(*paywire.Error); m.Code != paywire.CodeBadSignature {
				t.Fatalf("code %s", m.Code)
			}
		})
	}
	t.Run("the owner", func(t *testing.T) {
		p := start()
		sig := ecdsa.Sign(key("payer channel"), digest(id, testChallenge, payeeKey)).Serialize()
		effs, err := p.Handle(&paywire.ResumeProof{Header: paywire.Header{V: 1}, ChannelID: id, Sig: sig})
		if err != nil || p.State() != PayeeOpen || p.BestSat() != 2000 {
			t.Fatalf("err %v state %v best %d", err, p.State(), p.BestSat())
		}
		if _, ok := effs[0].(Send).Msg.(*paywire.Open); !ok {
			t.Fatalf("%+v", effs)
		}
	})
}

func digest(id string, challenge, payeeKey []byte) []byte {
	d := paywire.ResumeDigest(id, challenge, payeeKey)
	return d[:]
}

// TestMinPaymentFor: the derived minimum first payment can be settled at
// its fee rate with a non-dust payout, and one satoshi less cannot.
func TestMinPaymentFor(t *testing.T) {
	payout := p2wpkh(key("payee wallet"))
	for _, rate := range []txbuild.FeeRate{1000, 2000, 10_000, 100_000} {
		min, err := MinPaymentFor(payout, rate)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t)
		e.open()
		ch := e.payee.Channel()
		fee, err := ch.SettlementFee(min, payout, rate)
		if err != nil {
			t.Fatal(err)
		}
		if IsDust(min-fee, payout) {
			t.Fatalf("rate %d: min %d leaves %d after a %d fee", rate, min, min-fee, fee)
		}
		// The estimate sizes the payer's change for a P2WSH script (12 vB
		// more than this channel's P2WPKH change): no more above the exact
		// minimum than that.
		slack, _ := rate.FeeFor(12)
		if !IsDust(min-1-slack-fee, payout) {
			t.Fatalf("rate %d: min %d is far above the smallest (fee %d)", rate, min, fee)
		}
		t.Logf("%d sat/kvB: min first payment %d sat (fee %d)", rate, min, fee)
	}
}
