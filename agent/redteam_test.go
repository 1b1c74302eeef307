package agent_test

// Red-team findings on a real regtest node: attacks that got past the
// hardening of issue 9. Each test plays the dishonest side against our
// honest one and checks the honest side's money on chain.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/integration/rpctest"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/faulttest"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/txbuild"
)

// TestRedteamResumeTermsDrainPool: a hostile payee lets a channel open and
// drops the call before the first payment (the payer's next call resumes
// the channel, as `paysip call` does). On resume it answers with terms
// whose minimum first payment is nearly the whole pool. The limits a new
// channel's terms are checked against (the first payment at most the
// budget, or what a first payment needs) must hold on resume too: before
// the fix the payer's meter paid 900,000 sat within its first second.
func TestRedteamResumeTermsDrainPool(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	w.payee.KeepOpen = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	id := s.Channel().ID()
	conn.Close() // the callee hangs up before anything is paid
	<-done

	a, b := agent.Pipe()
	greedy := &faulttest.Tamper{Conn: b, Out: func(m paywire.Message) paywire.Message {
		if tm, ok := m.(*paywire.Terms); ok {
			tm.MinChannelSat, tm.MinPaymentSat = capacity, 900_000
		}
		return m
	}}
	go w.payee.Serve(ctx, greedy, "sip:caller@example.org")
	s2, err := w.payer.Resume(ctx, a, id)
	if err == nil {
		mctx, mcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		s2.Meter(mctx, meter.Payer{PriceSatPerMin: price}, nil)
		mcancel()
		t.Fatalf("resume took terms asking a first payment of 900,000 sat: the meter paid %d sat in half a second of call", s2.PaidSat())
	}
	if !errors.Is(err, channel.ErrBadTerms) || !lb.warned("refused the peer's message", "minimum first payment 900000") {
		t.Fatalf("resume: %v\n%s", err, lb)
	}
	a.Close()
	// Nothing was paid: the payer's whole pool comes back with its refund.
	rec, _ := w.payer.Store.Get(ctx, id)
	tip, _ := w.env.Chain.TipHeight(ctx)
	w.env.Mine(rec.RefundTx.LockTime - uint32(tip))
	txid, err := w.payer.Refund(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	fundingFee, refundFee := w.fee(s.Channel().Outpoint.Hash.String()), w.fee(txid)
	if payer, _ := w.balances(); payer != payerFunds-fundingFee-refundFee {
		t.Fatalf("payer %d, want %d - fees %d %d", payer, payerFunds, fundingFee, refundFee)
	}
}

// TestRedteamBudgetBelowFirstPayment: a caller's budget for the call is
// below the payee's minimum first payment (which is within what a first
// payment may need, so the terms pass). The meter must stop at the budget
// (ErrBudget, nothing paid) instead of paying the payee's minimum: before
// the fix a 2,000 sat budget paid 10,000 sat.
func TestRedteamBudgetBelowFirstPayment(t *testing.T) {
	t.Parallel()
	w, _ := attackWorld(t)
	w.payee.MinPaymentSat = 10_000 // ten seconds at 60,000 sat/min: FirstPaymentCap
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	mctx, mcancel := context.WithTimeout(ctx, 3*time.Second)
	err := s.Meter(mctx, meter.Payer{PriceSatPerMin: price, BudgetSat: 2_000}, nil)
	mcancel()
	if s.PaidSat() > 2_000 {
		t.Fatalf("budget 2000 sat, the meter paid %d (%v)", s.PaidSat(), err)
	}
	if !errors.Is(err, meter.ErrBudget) {
		t.Fatalf("meter: %v", err)
	}
	conn.Close()
	<-done
}

// TestRedteamResumeDoubleCounts: a payer keeps a call going on one
// connection while it resumes the same channel on a second one, holding
// its resume proof for a while. The payee reads the channel when the
// resume is asked; what the first call pays meanwhile was paid for the
// first call's time, yet the second call's meter counted it again (its
// base was the stale record): the second call got that time for free, and
// a payer alternating connections pays about half price. The metering of
// the resumed call must count only what is paid in it.
func TestRedteamResumeDoubleCounts(t *testing.T) {
	t.Parallel()
	w, _ := attackWorld(t)
	w.payee.KeepOpen = true
	w.payee.Metering = &meter.Payee{PriceSatPerMin: price, Tick: 100 * time.Millisecond, Grace: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _, first := w.call(ctx)
	id := s.Channel().ID()
	go s.Meter(ctx, meter.Payer{PriceSatPerMin: price, Tick: 100 * time.Millisecond}, nil)

	// The second connection asks to resume, then waits while the first
	// call pays on.
	a, b := agent.Pipe()
	second := make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); second <- served{res, err} }()
	send(t, ctx, a, &paywire.Hello{Versions: []int{1}, Resume: id})
	terms, ok := recv(t, ctx, a).(*paywire.Terms)
	if !ok {
		t.Fatal("no terms")
	}
	time.Sleep(3 * time.Second)
	rec, _ := w.payer.Store.Get(ctx, id)
	key, _ := w.payerW.ChannelKeyAt(rec.KeyIndex)
	d := paywire.ResumeDigest(id, terms.Challenge, terms.PayeeKey)
	send(t, ctx, a, &paywire.ResumeProof{ChannelID: id, Sig: ecdsa.Sign(key, d[:]).Serialize()})
	open, ok := recv(t, ctx, a).(*paywire.Open)
	if !ok {
		t.Fatal("not opened")
	}
	select {
	case <-first: // taken over
	case <-ctx.Done():
		t.Fatal("the first session goes on")
	}
	held, _ := w.payee.Store.Get(ctx, id)
	paidMeanwhile := held.BestSat - open.PaidSat
	if paidMeanwhile < 5_000 {
		t.Fatalf("the first call paid only %d sat during the resume", paidMeanwhile)
	}
	// One satoshi more than the payee holds, then nothing.
	sig, _ := rec.Channel.SignPayment(key, held.BestSat+1)
	send(t, ctx, a, &paywire.Pay{ChannelID: id, PaidSat: held.BestSat + 1, Sig: sig})
	start := time.Now()
	for {
		m := recv(t, ctx, a)
		e, ok := m.(*paywire.Error)
		if !ok {
			continue
		}
		if e.Code != paywire.CodePaymentLate || e.Expected == nil {
			t.Fatalf("payer told %+v", e)
		}
		if *e.Expected > paidMeanwhile {
			t.Fatalf("the resumed call paid 1 sat and was served %v (%d sat due) before it was late: the %d sat the first call paid during the resume were counted again", time.Since(start).Round(time.Millisecond), *e.Expected, paidMeanwhile)
		}
		break
	}
	<-second
}

// mineConflict builds a block on the node's tip holding txs, as a miner
// taking a transaction the node's own mempool refused would (a double
// spend sent to a miner directly, or a full-RBF miner), and submits it.
func mineBlock(t *testing.T, w *world, txs ...*wire.MsgTx) {
	t.Helper()
	c, err := rpcclient.New(w.env.Node.ConnConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	best, err := c.GetBestBlockHash()
	if err != nil {
		t.Fatal(err)
	}
	prev, err := c.GetBlock(best)
	if err != nil {
		t.Fatal(err)
	}
	height, err := c.GetBlockCount()
	if err != nil {
		t.Fatal(err)
	}
	pb := btcutil.NewBlock(prev)
	pb.SetHeight(int32(height))
	var inc []*btcutil.Tx
	for _, tx := range txs {
		inc = append(inc, btcutil.NewTx(tx))
	}
	miner, _ := w.env.Faucet.NewAddress()
	b, err := rpctest.CreateBlock(pb, inc, 0x20000000, time.Time{}, miner, nil, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SubmitBlock(b, nil); err != nil {
		t.Fatalf("submitblock: %v", err)
	}
}

// doubleSpend returns a transaction spending the first input of funding
// back to the payer's wallet, signed: the node refuses it (the funding is
// final), a miner may not.
func doubleSpend(t *testing.T, w *world, funding *wire.MsgTx) *wire.MsgTx {
	t.Helper()
	op := funding.TxIn[0].PreviousOutPoint
	prev := w.tx(op.Hash.String())
	coins := []txbuild.Coin{{Outpoint: op, Value: prev.TxOut[op.Index].Value, PkScript: prev.TxOut[op.Index].PkScript}}
	back, _ := w.payerW.NewScript()
	ds, _, _, err := txbuild.Fund(coins, nil, back, regtest.FeeRate*10)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.payerW.Sign(ds, coins); err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestRedteamFundingGoneResume: a payer served on a zero-conf funding gets
// a double spend of it mined (the risk docs/security.md bounds by "the
// call time delivered before the first confirmation"). The payee's watch
// sees the funding go and ends the call. But the channel stays open in the
// payee's store and a resume is served on it, and a session resumed while
// the funding is unconfirmed does not watch it at all: calls go on being
// "paid" from a pool that does not exist, after the payee knew.
func TestRedteamFundingGoneResume(t *testing.T) {
	t.Parallel()
	for _, when := range []string{"after the watch saw it", "resumed before"} {
		t.Run(when, func(t *testing.T) {
			t.Parallel()
			w, lb := attackWorld(t)
			w.payee.KeepOpen = true
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, _, done := w.call(ctx)
			id := s.Channel().ID()
			rec, _ := w.payer.Store.Get(ctx, id)
			if st, _ := w.env.Chain.TxStatus(ctx, rec.Channel.Outpoint.Hash); st.Confirmations != 0 {
				t.Fatal("funding confirmed: the test wants a zero-conf channel")
			}
			w.pay(ctx, s, 1, 3)
			if when == "resumed before" {
				a, b := agent.Pipe()
				done2 := make(chan served, 1)
				go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); done2 <- served{res, err} }()
				var err error
				if s, err = w.payer.Resume(ctx, a, id); err != nil {
					t.Fatal(err)
				}
				<-done // taken over
				done = done2
				w.pay(ctx, s, 4, 5)
			}
			mineBlock(t, w, doubleSpend(t, w, rec.FundingTx))
			select {
			case r := <-done:
				if !errors.Is(r.err, agent.ErrFundingGone) {
					t.Fatalf("session: %v", r.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the call goes on after its funding was double spent in a block:\n%s", lb)
			}
			// Resuming the dead channel.
			a, b := agent.Pipe()
			go w.payee.Serve(ctx, b, "sip:caller@example.org")
			s2, err := w.payer.Resume(ctx, a, id)
			if err == nil {
				from := s2.PaidSat()/1000 + 1
				w.pay(ctx, s2, from, from+9)
				t.Fatalf("a channel whose funding was double spent was resumed, and 10 more seconds of call were acknowledged (held %d sat of a pool that does not exist)", s2.PaidSat())
			}
			if !errors.Is(err, agent.ErrResumeRefused) {
				t.Fatalf("resume: %v", err)
			}
			if !lb.warned("funding") {
				t.Fatalf("not logged:\n%s", lb)
			}
		})
	}
}

// TestRedteamFundingWaitHoldsSlot: a funding that must wait for a
// confirmation (it signals replaceability, or is above the zero-conf limit)
// is waited for until it confirms or the refund window goes stale (up to
// MaxExpiryBlocks, 1,008 blocks by default, a week), outside the handshake
// timeout, and the wait went on after the payer hung up: a session a
// payer abandoned kept its pending slot (and, in `paysip serve`, its call's
// WebRTC peer). MaxPending such fundings, which need never confirm, shut
// the payee to every new channel. A payer gone while its funding waits
// ends the wait.
func TestRedteamFundingWaitHoldsSlot(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	w.payee.MaxPending, w.payee.HandshakeTimeout = 1, time.Second // 300 ms failed on a loaded machine (the raw open alone took longer)
	addr, _ := w.payerW.NewAddress()
	w.env.Fund(addr, payerFunds) // a second coin, for the honest call
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	abandoned := make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, b, "sip:abandoner@example.org"); abandoned <- served{res, err} }()
	rawOpen(t, ctx, w, a, func(payer, payee *btcec.PublicKey) *wire.MsgTx {
		funding, _ := rawFunding(t, w, payer, payee)
		return funding
	})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(lb.String(), "signals replaceability") && time.Now().Before(deadline) {
		time.Sleep(pollingStep)
	}
	a.Close() // the payer hangs up; its funding never confirms
	select {
	case <-abandoned:
	case <-time.After(3 * time.Second):
		c, d := agent.Pipe()
		go w.payee.Serve(ctx, d, "sip:caller@example.org")
		send(t, ctx, c, &paywire.Hello{Versions: []int{1}})
		m := recv(t, ctx, c)
		t.Fatalf("3 s after its payer hung up, the session still waits for the funding; the next caller is told %s", m.Type()+" "+errCode(m))
	}
	// Room for an honest caller.
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 1)
	conn.Close()
	<-done
}

func errCode(m paywire.Message) string {
	if e, ok := m.(*paywire.Error); ok {
		return e.Code
	}
	return ""
}

// TestRedteamFundingWaitUnpaidCall: while a funding waits for its
// confirmation the call is up (paysip serve answers it before the channel
// opens) and nothing is metered. The wait is bounded by the refund window
// going stale, and the payer chooses the window: with the latest lock the
// payee accepts (tip + 1,008), a funding that never confirms (a low fee;
// here, blocks that leave it out) kept a connected payer's call going for
// up to a week of blocks. A funding must be accepted within the blocks a
// payer choosing the earliest lock would have (MinExpiryBlocks -
// MinLockAheadBlocks: 6 by default), whatever lock it chose.
func TestRedteamFundingWaitUnpaidCall(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	done := make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); done <- served{res, err} }()
	rawOpenAt(t, ctx, w, a, func(t *channel.Terms) uint32 { return t.MaxExpiryHeight }, func(payer, payee *btcec.PublicKey) *wire.MsgTx {
		funding, _ := rawFunding(t, w, payer, payee)
		return funding
	})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(lb.String(), "signals replaceability") && time.Now().Before(deadline) {
		time.Sleep(pollingStep)
	}
	for i := 0; i < 7; i++ { // blocks without the funding
		mineBlock(t, w)
	}
	select {
	case r := <-done:
		if r.err == nil || !strings.Contains(r.err.Error(), "not confirmed") {
			t.Fatalf("session: %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("7 blocks after the funding came, unconfirmed, the call still waits for it, unpaid:\n%s", lb)
	}
	if m, ok := recv(t, ctx, a).(*paywire.Error); !ok || m.Code != paywire.CodeBadFunding {
		t.Fatalf("payer told %+v", m)
	}
}

// rawOpenAt is rawOpen with the refund's lock chosen from the terms.
func rawOpenAt(t *testing.T, ctx context.Context, w *world, a agent.Conn, expiry func(*channel.Terms) uint32, fund func(payer, payee *btcec.PublicKey) *wire.MsgTx) {
	t.Helper()
	key, _, _ := w.payerW.ChannelKey()
	p := channel.NewPayer(channel.PayerConfig{Key: key, MaxPriceSatPerMin: price, MaxCapacitySat: capacity})
	tip, _ := w.env.Chain.TipHeight(ctx)
	p.ObserveTip(uint32(tip))
	effs, _ := p.Start()
	for len(effs) > 0 {
		ef := effs[0]
		effs = effs[1:]
		switch ef := ef.(type) {
		case channel.Send:
			send(t, ctx, a, ef.Msg)
			if _, ok := ef.Msg.(*paywire.Funded); ok {
				continue
			}
			more, err := p.Handle(recv(t, ctx, a))
			if err != nil {
				t.Fatal(err)
			}
			effs = append(effs, more...)
		case channel.TermsReceived:
			script, _ := w.payerW.NewScript()
			more, err := p.Fund(channel.FundRequest{FundingTx: fund(key.PubKey(), ef.Terms.PayeeKey), ExpiryHeight: expiry(ef.Terms), PayerScript: script, RefundFee: regtest.FeeRate})
			if err != nil {
				t.Fatal(err)
			}
			effs = append(effs, more...)
		case channel.BroadcastFunding:
			if err := w.env.Chain.Broadcast(ctx, ef.Tx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// feeSpike is the payee's view of the network with the fee market moved:
// the real node for everything, but its fee estimate raised (regtest's is
// a constant).
type feeSpike struct {
	chain.Chain
	rate atomic.Int64
}

func (f *feeSpike) FeeRate(ctx context.Context, target int) (txbuild.FeeRate, error) {
	if r := f.rate.Load(); r > 0 {
		return txbuild.FeeRate(r), nil
	}
	return f.Chain.FeeRate(ctx, target)
}

// TestRedteamSettlementFeeSpike: fees rise fivefold during a call (the
// payee's minimum payment has headroom for twice). The settlement at the
// estimate would leave the payee a dust payout, so it is refused, retried
// at the estimate until the refund's lock, and the payer takes the pool
// back: the payee lost every acknowledged satoshi. When the settlement is
// due, a payee that cannot pay the estimate settles at the largest fee
// that leaves it a payout (still above the node's relay minimum): less
// than it was acknowledged, but not nothing.
func TestRedteamSettlementFeeSpike(t *testing.T) {
	t.Parallel()
	w, _ := attackWorld(t)
	spike := &feeSpike{Chain: w.env.Chain}
	w.payee.Chain = spike
	w.payee.KeepOpen = true
	w.payee.MinExpiryBlocks, w.payee.MaxExpiryBlocks = 10, 20
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 1) // 1,000 sat acknowledged
	conn.Close()
	<-done
	spike.rate.Store(int64(regtest.FeeRate) * 5)
	id := s.Channel().ID()
	rec, _ := w.payee.Store.Get(ctx, id)
	tip, _ := w.env.Chain.TipHeight(ctx)
	w.env.Mine(rec.Channel.ExpiryHeight - uint32(tip) - 7) // due: within the settle margin
	w.payee.Recover(ctx)
	spend, _ := w.env.Chain.SpendOf(ctx, rec.Channel.Outpoint, rec.Channel.PkScript)
	if spend == nil {
		// Nothing in the mempool: the payer's refund wins at the lock.
		w.env.Mine(7)
		refund, _ := w.payer.Store.Get(ctx, id)
		w.env.Chain.Broadcast(ctx, refund.RefundTx)
		_, payee := w.balances()
		t.Fatalf("the payee could not settle 1,000 acknowledged sat at a fee spike; the payer refunded; payee wallet %d", payee)
	}
	w.env.Mine(1)
	settleFee := w.fee(spend.TxID.String())
	if _, payee := w.balances(); payee != 1000-settleFee || payee <= 0 {
		t.Fatalf("payee %d, settlement fee %d", payee, settleFee)
	}
}

// TestRedteamResumeHandshakeUnmetered: `paysip serve` answers a call (and
// plays its audio) before the payment protocol runs; the payee's meter
// counts from the channel's open. A resume needs no chain wait, yet its
// handshake may last HandshakeTimeout (60 s): a payer that resumes, holds
// its resume proof for 59 s, then hangs up when it is due to pay, gets
// about a minute of call per call for nothing, call after call.
func TestRedteamResumeHandshakeUnmetered(t *testing.T) {
	t.Skip("finding (not fixed, design): the call is served before the channel opens and the meter counts from the open; " +
		"fix in paysip serve (no audio until the channel is open), or count a resume's handshake in its meter, or give resumes a short handshake timeout")
	t.Parallel()
	w, _ := attackWorld(t)
	w.payee.KeepOpen = true
	w.payee.Metering = &meter.Payee{PriceSatPerMin: price, Tick: 100 * time.Millisecond, Grace: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 1)
	id := s.Channel().ID()
	conn.Close()
	<-done
	a, b := agent.Pipe()
	go w.payee.Serve(ctx, b, "sip:caller@example.org")
	start := time.Now() // the call is up from here
	send(t, ctx, a, &paywire.Hello{Versions: []int{1}, Resume: id})
	terms := recv(t, ctx, a).(*paywire.Terms)
	time.Sleep(3 * time.Second) // the payer holds its proof
	rec, _ := w.payer.Store.Get(ctx, id)
	key, _ := w.payerW.ChannelKeyAt(rec.KeyIndex)
	d := paywire.ResumeDigest(id, terms.Challenge, terms.PayeeKey)
	send(t, ctx, a, &paywire.ResumeProof{ChannelID: id, Sig: ecdsa.Sign(key, d[:]).Serialize()})
	for {
		if e, ok := recv(t, ctx, a).(*paywire.Error); ok {
			if served := time.Since(start); served > 2*time.Second {
				t.Fatalf("the resumed call was served %v with nothing paid before it was found late (%s)", served.Round(time.Millisecond), e.Code)
			}
			return
		}
	}
}
