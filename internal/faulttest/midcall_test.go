package faulttest_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/internal/faulttest"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipconn"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
)

// metered makes the payee hang up on a payer that falls 2 s behind (80
// ticks: generous, for a loaded 2-core machine),
// as `paysip payee --grace` does.
func metered(p *agent.Payee) {
	p.Metering = &meter.Payee{PriceSatPerMin: faulttest.Price, Tick: faulttest.Tick, Grace: 2 * time.Second}
}

// paymentsSeen counts the payments the payee stored.
func paymentsSeen(w *faulttest.World) *atomic.Int64 {
	var n atomic.Int64
	w.Payee.OnPayment = func(string, int64) { n.Add(1) }
	return &n
}

// checkMoney runs both sides' checks against the chain and logs the
// figures.
func checkMoney(t *testing.T, w *faulttest.World) (payer, payee faulttest.Money) {
	t.Helper()
	payer, payee = w.CheckPayer(t), w.CheckPayee(t)
	t.Logf("on chain: payer's %d channel(s): %d sat settled to the payee, %d sat refunded; payee's %d channel(s): %d sat settled",
		payer.Channels, payer.SettledSat, payer.RefundedSat, payee.Channels, payee.SettledSat)
	return payer, payee
}

// TestDataChannelDropsMidCall: a paid call set up through the SIP proxy
// (INVITE with the SDP offer of audio and the paysip DataChannel, 200 OK
// with the answer), the payments on the real WebRTC DataChannel (pion,
// loopback); mid-call one side's peer connection goes away with no
// protocol message. Both sides see it at once (no hang), the payer stops
// paying, the payee settles the best payment it stored, and the chain
// shows exactly that: never less than the payer saw acknowledged, never
// more than it signed.
func TestDataChannelDropsMidCall(t *testing.T) {
	for _, side := range []string{"payer", "payee"} {
		t.Run(side+" side drops", func(t *testing.T) {
			start := time.Now()
			w := faulttest.New(t, faulttest.Options{Payee: metered})
			paid := paymentsSeen(w)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			sipSrv := faulttest.StartSIP(t, ctx)
			cfg := rtcconn.Config{LoopbackOnly: true}
			tutor := sipSrv.UA(t, ctx, "tutor", faulttest.Price)
			payeePeer := make(chan *rtcconn.Peer, 1)
			tutor.OnInvite(func(ic *sipua.IncomingCall) {
				peer, answer, err := rtcconn.Answer(ctx, cfg, ic.Request.Body())
				if err != nil {
					ic.Reject(488, "Not Acceptable Here")
					return
				}
				if _, err := ic.Answer(answer); err != nil {
					peer.Close()
					return
				}
				payeePeer <- peer
			})
			a, offer, err := rtcconn.NewOffer(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			sipCall, err := sipSrv.UA(t, ctx, "caller", 0).Call(ctx, faulttest.URI("tutor"), offer, sip.NewHeader("Supported", "paysip"))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.SetAnswer(sipCall.RemoteSDP); err != nil {
				t.Fatal(err)
			}
			b := <-payeePeer
			defer b.Close()
			ca, err := a.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cb, err := b.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			call := w.StartCallOn(ctx, ca, cb, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 150})
			if !faulttest.Eventually(30*time.Second, func() bool { return paid.Load() >= 10 }) {
				t.Fatalf("only %d payments before the drop", paid.Load())
			}
			dropped := time.Now()
			if side == "payer" {
				a.Close()
			} else {
				b.Close()
			}
			if !call.Wait(30 * time.Second) {
				t.Fatal("a side did not notice the dropped DataChannel within 30 s")
			}
			t.Logf("both sides ended %v after the drop", time.Since(dropped).Round(time.Millisecond))
			sipCall.Hangup(ctx)
			if !faulttest.IsConnErr(call.Payer.Err) {
				t.Errorf("payer: %v, want the connection's end", call.Payer.Err)
			}
			res := call.Payee.Result
			if res == nil || res.SettlementTxID == "" {
				t.Fatalf("payee did not settle: %+v %v", res, call.Payee.Err)
			}
			rec := w.PayeeDB.Record(t, res.ChannelID)
			if res.PaidSat != rec.BestSat || rec.BestSat < call.Payer.AckedSat {
				t.Fatalf("payee settled %d, stored %d, payer saw %d acknowledged", res.PaidSat, rec.BestSat, call.Payer.AckedSat)
			}
			w.Node.Mine(1)
			// The payer's watcher recognises the settlement.
			if err := w.Payer.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			if st := w.PayerDB.Record(t, res.ChannelID).State; st != store.StateSettled {
				t.Errorf("payer's channel is %s after the settlement confirmed", st)
			}
			pm, em := checkMoney(t, w)
			if pm.SettledSat != rec.BestSat || em.SettledSat != rec.BestSat {
				t.Fatalf("settled %d/%d, payee's best %d", pm.SettledSat, em.SettledSat, rec.BestSat)
			}
			t.Logf("%d payments, %d sat settled; %v", paid.Load(), rec.BestSat, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestNodeRestartsMidCall: the Bitcoin node stops and starts again while
// the call pays (the funding still unconfirmed, so the node forgets it:
// btcd keeps its blocks across restarts, not its mempool). Payments go on
// meanwhile (they need no node), the call ends with close, and with the
// watchers running (as `paysip payee` and the demo run them) the payer's
// funding is broadcast again and the payee's settlement lands: on chain,
// the payee's best payment, at least every acknowledged satoshi.
func TestNodeRestartsMidCall(t *testing.T) {
	start := time.Now()
	w := faulttest.New(t, faulttest.Options{Payee: metered})
	paid := paymentsSeen(w)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := w.Watch(ctx, 100*time.Millisecond)
	defer func() { stop() }()
	call := w.StartCall(ctx, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 150})
	if !faulttest.Eventually(30*time.Second, func() bool { return paid.Load() >= 5 }) {
		t.Fatalf("only %d payments", paid.Load())
	}
	before := paid.Load()
	t0 := time.Now()
	w.Node.Restart(200 * time.Millisecond)
	during := paid.Load() - before
	t.Logf("node down and back in %v; %d payments stored meanwhile", time.Since(t0).Round(time.Millisecond), during)
	if during == 0 {
		t.Error("no payment while the node restarted")
	}
	if !call.Wait(90 * time.Second) {
		t.Fatal("call did not end")
	}
	t.Logf("payer: %+v; payee: %+v %v", call.Payer, call.Payee.Result, call.Payee.Err)
	if call.Payer.Err != nil && !faulttest.IsConnErr(call.Payer.Err) {
		t.Errorf("payer ended with %v", call.Payer.Err)
	}
	id := call.Payer.ChannelID
	rec := w.PayeeDB.Record(t, id)
	// (Known bug below: once the payer's watcher is gone, nothing can
	// bring the funding back; 3 s more then settle the question.)
	faulttest.Eventually(20*time.Second, func() bool { return w.Pool(t, rec).Spent || len(w.Exits()) > 0 })
	if !faulttest.Eventually(3*time.Second, func() bool { return w.Pool(t, rec).Spent }) {
		t.Fatalf("no settlement reached the node within a minute: payee %s %q, payer %s", w.PayeeDB.Record(t, id).State, w.PayeeDB.Record(t, id).CloseTxID, w.PayerDB.Record(t, id).State)
	}
	w.Node.Mine(1)
	stop()
	stop = func() {}
	exits := w.Exits()
	w.Payer.Recover(ctx)
	pm, em := checkMoney(t, w)
	best := w.PayeeDB.Record(t, id).BestSat
	if len(exits) > 0 {
		t.Errorf("watchers stopped by themselves: %v", exits)
	}
	if pm.SettledSat != best || em.SettledSat != best || best < call.Payer.AckedSat || best != 150*faulttest.Price/60 {
		t.Fatalf("settled %d/%d, payee's best %d, payer acked %d", pm.SettledSat, em.SettledSat, best, call.Payer.AckedSat)
	}
	t.Logf("%v", time.Since(start).Round(time.Millisecond))
}

// TestNodeUnreachableAtSettlement: the call ends with close while the node
// is down, so the payee cannot settle then; its process even restarts
// before the node is back. When the node comes back the payee settles (the
// watcher retries), long before the refund's lock time: the payer never
// gets the chance to take back what it paid.
func TestNodeUnreachableAtSettlement(t *testing.T) {
	start := time.Now()
	w := faulttest.New(t, faulttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := w.Watch(ctx, 100*time.Millisecond)
	defer func() { stop() }()
	s, err := openWithPipe(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	w.Node.Mine(1) // the funding confirmed: this test is about the settlement
	if err := s.session.Pay(ctx, 5000); err != nil {
		t.Fatal(err)
	}
	w.Node.Stop()
	_, cerr := s.session.Close(ctx, "hangup")
	served := <-s.served
	t.Logf("with the node down: payer's close: %v; payee: %+v %v", cerr, served.Result, served.Err)
	if served.Result == nil || served.Result.SettlementTxID != "" {
		t.Fatalf("payee result %+v", served.Result)
	}
	// The payee's process restarts meanwhile: the decision to settle is
	// in its store, not only in the memory of the session that took it.
	stop()
	w.RestartPayee()
	stop = w.Watch(ctx, 100*time.Millisecond)
	time.Sleep(2 * time.Second)
	w.Node.Start()
	back := time.Now()
	id := s.session.Channel().ID()
	rec := w.PayeeDB.Record(t, id)
	if !faulttest.Eventually(40*time.Second, func() bool { return w.Pool(t, rec).Spent }) {
		rec := w.PayeeDB.Record(t, id)
		t.Fatalf("the payee did not settle when the node returned: channel %s stays %s with best %d (it would wait until %d blocks before its lock time %d; tip %d)", id, rec.State, rec.BestSat, agent.DefaultSettleMargin, rec.Channel.ExpiryHeight, w.Node.Tip())
	}
	t.Logf("settled %v after the node returned", time.Since(back).Round(time.Millisecond))
	w.Node.Mine(1)
	stop()
	stop = func() {}
	w.Payer.Recover(ctx)
	if tip, exp := w.Node.Tip(), w.PayeeDB.Record(t, id).Channel.ExpiryHeight; tip >= exp {
		t.Fatalf("settled at height %d, lock time %d", tip, exp)
	}
	pm, em := checkMoney(t, w)
	if pm.SettledSat != 5000 || em.SettledSat != 5000 {
		t.Fatalf("settled %d/%d, want 5000", pm.SettledSat, em.SettledSat)
	}
	t.Logf("%v", time.Since(start).Round(time.Millisecond))
}

type piped struct {
	session *agent.PayerSession
	served  chan faulttest.PayeeOutcome
}

func openWithPipe(ctx context.Context, w *faulttest.World) (*piped, error) {
	a, b := agent.Pipe()
	p := &piped{served: make(chan faulttest.PayeeOutcome, 1)}
	go func() { p.served <- faulttest.HonestPayee{}.Serve(ctx, w, b, "sip:caller@paysip.test") }()
	s, err := w.Payer.Open(ctx, a, "sip:tutor@paysip.test")
	p.session = s
	return p, err
}

// TestDiskFullWhileStoringPayment: the payee's disk fills as it stores a
// payment. That payment is not acknowledged; the payer, with no ack,
// stops paying (it signed that one payment more, no further); the payee
// ends the call. What it stored before is intact: once space is freed it
// settles exactly that, and the chain shows it.
func TestDiskFullWhileStoringPayment(t *testing.T) {
	start := time.Now()
	w := faulttest.New(t, faulttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	paid := paymentsSeen(w)
	w.PayeeDB.FillAfterPayments(7)
	call := w.StartCall(ctx, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 100})
	if !call.Wait(60 * time.Second) {
		t.Fatal("call did not end")
	}
	t.Logf("payer: %+v; payee: %v", call.Payer, call.Payee.Err)
	if !errors.Is(call.Payee.Err, store.ErrNotStored) {
		t.Errorf("payee's error %v, want store.ErrNotStored", call.Payee.Err)
	}
	id := call.Payer.ChannelID
	payee, payer := w.PayeeDB.Record(t, id), w.PayerDB.Record(t, id)
	if paid.Load() != 7 || payee.BestSat == 0 {
		t.Fatalf("payee stored %d payments, best %d; want 7", paid.Load(), payee.BestSat)
	}
	// The eighth payment (a running total above the seventh) was signed,
	// not stored by the payee, not acknowledged; none after it.
	if payer.AckedSat != payee.BestSat || payer.SignedSat <= payee.BestSat || payer.SignedSat > payee.BestSat+3000 {
		t.Fatalf("payer acked %d signed %d; payee stored %d: the payer must stop one payment past the last ack", payer.AckedSat, payer.SignedSat, payee.BestSat)
	}
	if call.Payer.Err == nil {
		t.Fatal("payer reports no error after an unacknowledged payment")
	}
	// The operator frees space; the payee settles its best by hand
	// (`paysip channels settle ID`) or its watcher does near expiry.
	w.PayeeDB.Fill(false)
	if _, err := w.Payee.Settle(ctx, id); err != nil {
		t.Fatal(err)
	}
	w.Node.Mine(1)
	w.Payer.Recover(ctx)
	pm, em := checkMoney(t, w)
	if pm.SettledSat != payee.BestSat || em.SettledSat != payee.BestSat {
		t.Fatalf("settled %d/%d, want %d", pm.SettledSat, em.SettledSat, payee.BestSat)
	}
	t.Logf("refused writes: %d; %v", w.PayeeDB.Refused.Load(), time.Since(start).Round(time.Millisecond))
}

// TestLockTimeNearMidCall: a call still running when the chain comes
// within the payee's settle margin of the refund's lock time (a long call,
// or a channel resumed late). The payee's watcher settles then, as it must
// before the payer can take its refund; what the payee acknowledges after
// that can no longer be collected, so it must stop acknowledging (end the
// call) rather than go on taking payments it will never see.
func TestLockTimeNearMidCall(t *testing.T) {
	start := time.Now()
	w := faulttest.New(t, faulttest.Options{ExpiryBlocks: 30, Payee: metered})
	paid := paymentsSeen(w)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := w.Watch(ctx, 50*time.Millisecond)
	defer func() { stop() }()
	call := w.StartCall(ctx, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 190})
	if !faulttest.Eventually(30*time.Second, func() bool { return paid.Load() >= 5 }) {
		t.Fatalf("only %d payments", paid.Load())
	}
	w.Node.Mine(30 - agent.DefaultSettleMargin + 1) // within the margin
	id := ""
	for _, r := range w.PayeeDB.Records(t) {
		id = r.ID()
	}
	rec := w.PayeeDB.Record(t, id)
	if !faulttest.Eventually(10*time.Second, func() bool { return w.Pool(t, rec).Spent }) {
		t.Fatal("the watcher did not settle within the margin")
	}
	settledAt := paid.Load()
	if !call.Wait(60 * time.Second) {
		t.Fatal("call did not end")
	}
	w.Node.Mine(1)
	stop()
	stop = func() {}
	after := paid.Load() - settledAt
	best := w.PayeeDB.Record(t, id).BestSat
	p := w.Pool(t, rec)
	t.Logf("settled %d on chain at payment %d; the call went on: %d payments more, payee's best %d, payer acknowledged %d; %v",
		p.PaidSat, settledAt, after, best, call.Payer.AckedSat, time.Since(start).Round(time.Millisecond))
	if p.PaidSat < call.Payer.AckedSat {
		t.Fatalf("the payee settled %d on chain but acknowledged %d (%d payments after the settlement began)", p.PaidSat, call.Payer.AckedSat, after)
	}
}

// TestDiskFullAtThePayer: the payer's disk fills. When it stores its
// refund (before anything is broadcast): the funding never leaves, the
// payer's coins stay where they were. When it stores a signed payment
// (before sending it): that payment never leaves either; the payee, paid
// no more, hangs up and settles exactly what the payer stored and was
// acknowledged.
func TestDiskFullAtThePayer(t *testing.T) {
	t.Run("refund", func(t *testing.T) {
		w := faulttest.New(t, faulttest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		before, err := w.Payer.Wallet.Balance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.PayerDB.Fill(true)
		call := w.StartCall(ctx, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 10})
		if !call.Wait(30 * time.Second) {
			t.Fatal("call did not end")
		}
		if !errors.Is(call.Payer.Err, store.ErrNotStored) || call.Payer.ChannelID != "" {
			t.Fatalf("payer: %+v", call.Payer)
		}
		after, err := w.Payer.Wallet.Balance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("payer's coins moved with its refund unstored: %+v -> %+v", before, after)
		}
		if n := len(w.PayerDB.Records(t)); n != 0 {
			t.Fatalf("%d payer channels stored on a full disk", n)
		}
		t.Logf("payer: %v; its coins: %+v, untouched", call.Payer.Err, after)
	})
	t.Run("payment", func(t *testing.T) {
		w := faulttest.New(t, faulttest.Options{Payee: metered})
		paid := paymentsSeen(w)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		w.PayerDB.FillAfterPayments(5)
		call := w.StartCall(ctx, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 100})
		if !call.Wait(30 * time.Second) {
			t.Fatal("call did not end")
		}
		id := call.Payer.ChannelID
		payer, payee := w.PayerDB.Record(t, id), w.PayeeDB.Record(t, id)
		t.Logf("payer: %v (signed %d, acked %d); payee: %v (best %d, %d payments)", call.Payer.Err, payer.SignedSat, payer.AckedSat, call.Payee.Err, payee.BestSat, paid.Load())
		if !errors.Is(call.Payer.Err, store.ErrNotStored) {
			t.Errorf("payer's error %v, want store.ErrNotStored", call.Payer.Err)
		}
		// Five payments stored (each a running total; one may cover two
		// ticks when the meter catches up), the sixth refused.
		if paid.Load() != 5 || payer.SignedSat != payee.BestSat || payer.AckedSat != payee.BestSat || payee.BestSat == 0 {
			t.Fatalf("an unstored payment left the payer, or a stored one was lost")
		}
		w.PayerDB.Fill(false)
		if call.Payee.Result == nil || call.Payee.Result.SettlementTxID == "" {
			t.Fatalf("payee did not settle: %+v", call.Payee.Result)
		}
		w.Node.Mine(1)
		w.Payer.Recover(ctx)
		pm, em := checkMoney(t, w)
		if pm.SettledSat != payee.BestSat || em.SettledSat != payee.BestSat {
			t.Fatalf("settled %d/%d, want %d", pm.SettledSat, em.SettledSat, payee.BestSat)
		}
	})
}

// TestMessageDialogEndsMidCall: a paid call whose payments travel in
// in-dialog SIP MESSAGEs through the proxy; mid-call one side hangs up
// (BYE) with no protocol close, as a user closing a softphone would.
// Both sides end at once, the payee
// settles the best payment it stored, and the chain shows exactly that.
func TestMessageDialogEndsMidCall(t *testing.T) {
	for _, side := range []string{"payer", "payee"} {
		t.Run(side+" hangs up", func(t *testing.T) {
			w := faulttest.New(t, faulttest.Options{Payee: metered})
			paid := paymentsSeen(w)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			sipSrv := faulttest.StartSIP(t, ctx)
			tutor := sipSrv.UA(t, ctx, "tutor", faulttest.Price)
			answered := make(chan *sipua.Call, 1)
			tutor.OnInvite(func(ic *sipua.IncomingCall) {
				c, err := ic.Answer([]byte("v=0\r\n"))
				if err != nil {
					return
				}
				answered <- c
			})
			callerCall, err := sipSrv.UA(t, ctx, "caller", 0).Call(ctx, faulttest.URI("tutor"), []byte("v=0\r\n"), sip.NewHeader("Supported", "paysip"))
			if err != nil {
				t.Fatal(err)
			}
			tutorCall := <-answered
			call := w.StartCallOn(ctx, sipconn.New(callerCall), sipconn.New(tutorCall), faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 150})
			if !faulttest.Eventually(30*time.Second, func() bool { return paid.Load() >= 10 }) {
				t.Fatalf("only %d payments before the hang-up", paid.Load())
			}
			hung := time.Now()
			if side == "payer" {
				callerCall.Hangup(ctx)
			} else {
				tutorCall.Hangup(ctx)
			}
			if !call.Wait(30 * time.Second) {
				t.Fatal("a side did not notice the BYE within 30 s")
			}
			t.Logf("both sides ended %v after the BYE; payer: %v; payee: %v", time.Since(hung).Round(time.Millisecond), call.Payer.Err, call.Payee.Err)
			if call.Payer.Err == nil || call.Payer.Closed {
				t.Errorf("payer: %+v", call.Payer)
			}
			res := call.Payee.Result
			if res == nil || res.SettlementTxID == "" {
				t.Fatalf("payee did not settle: %+v %v", res, call.Payee.Err)
			}
			best := w.PayeeDB.Record(t, res.ChannelID).BestSat
			if res.PaidSat != best || best < call.Payer.AckedSat {
				t.Fatalf("payee settled %d, stored %d, payer saw %d acknowledged", res.PaidSat, best, call.Payer.AckedSat)
			}
			w.Node.Mine(1)
			w.Payer.Recover(ctx)
			pm, em := checkMoney(t, w)
			if pm.SettledSat != best || em.SettledSat != best {
				t.Fatalf("settled %d/%d, payee's best %d", pm.SettledSat, em.SettledSat, best)
			}
		})
	}
}
