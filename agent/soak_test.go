package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/internal/faulttest"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/store"
)

// TestSoakDishonestPeers: 100 calls on one regtest node between honest
// and randomly dishonest peers, with random hang-ups. An honest payer and
// an honest payee each call, or answer, peers that cheat in one of the
// ways of the attack tests. At the end, after the chain passes every lock
// time and the honest sides' watchers run: every satoshi the honest payee
// acknowledged is settled to it on chain, and the honest payer got every
// pool back but what it paid (at most one payment beyond what was
// acknowledged, to a payee that stops acknowledging), checked transaction
// by transaction against the node. PAYSIP_SOAK_SEED replays a run.
func TestSoakDishonestPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PAYSIP_SOAK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (PAYSIP_SOAK_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	w := newWorld(t) // honest payer and honest payee
	log := slog.New(slog.DiscardHandler)
	w.payer.Log, w.payee.Log = log, log
	// The ack timeout only needs to tell a mute payee from a slow one:
	// 300 ms failed an honest call on a machine at load 16.
	w.payer.CapacitySat, w.payer.AckTimeout = 100_000, time.Second
	w.payee.MinExpiryBlocks, w.payee.MaxExpiryBlocks = 10, 20
	w.payee.MaxPaymentsPerSec, w.payee.PaymentBurst = 5, 10
	addr, _ := w.payerW.NewAddress()
	w.env.Fund(addr, 10_000_000)
	// The rogues: a payer and a payee of their own, with their own wallets
	// and stores; nothing of theirs is checked but what they did to us.
	rogueW, _ := w.env.NewWallet("rogue-payer", "")
	raddr, _ := rogueW.NewAddress()
	w.env.Fund(raddr, 10_000_000)
	roguePayer := &agent.Payer{Wallet: rogueW, Chain: w.env.Chain, Store: openStore(t, "rogue-payer.db"), CapacitySat: 100_000, MaxPriceSatPerMin: price, Log: log}
	roguePayeeW, _ := w.env.NewWallet("rogue-payee", "")
	roguePayee := &agent.Payee{Wallet: roguePayeeW, Chain: w.env.Chain, Store: openStore(t, "rogue-payee.db"), PriceSatPerMin: price,
		Poll: pollingStep, Log: log, FeeHeadroom: 1, KeepOpen: true, MinExpiryBlocks: 10, MaxExpiryBlocks: 20}
	payerStart := w.env.Confirmed(w.payerW)

	acked := map[string]int64{} // honest payee: what it acknowledged, per channel
	w.payee.OnPayment = func(id string, paid int64) { acked[id] = paid }
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// The honest sides' watchers run all along, as in a deployment.
	go w.payee.WatchExpiries(ctx, pollingStep)
	go w.payer.WatchRefunds(ctx, pollingStep, nil)

	kinds := []string{"honest", "payer-hangs-up", "payer-replays", "payer-floods", "payer-stale", "payee-mute", "payee-fake-close", "payee-vanishes"}
	count := map[string]int{}
	for i := 0; i < 100; i++ {
		kind := kinds[rng.IntN(len(kinds))]
		count[kind]++
		secs := int64(1 + rng.IntN(4))
		if err := soakCall(ctx, t, w, kind, secs, roguePayer, roguePayee); err != nil {
			t.Fatalf("call %d (%s): %v", i, kind, err)
		}
		w.env.Mine(1)
	}
	// Past every lock time; the honest sides' watchers act.
	for i := 0; i < 25; i++ {
		w.env.Mine(1)
		time.Sleep(5 * pollingStep)
	}
	deadline := time.Now().Add(time.Minute)
	for pending := -1; pending != 0 && time.Now().Before(deadline); time.Sleep(10 * pollingStep) {
		w.env.Mine(1)
		open, _ := w.payer.Store.List(ctx, store.StateOpen, store.StateRefundOnly, store.StateClosing)
		more, _ := w.payee.Store.List(ctx, store.StateOpen, store.StateClosing)
		pending = len(open) + len(more)
	}
	w.env.Mine(1)
	t.Logf("calls by kind: %v", count)

	// The honest payee: every acknowledged satoshi settled to it.
	var payeeWant int64
	recs, _ := w.payee.Store.List(ctx)
	for _, rec := range recs {
		agent.Reconcile(ctx, w.env.Chain, w.payee.Store, rec)
		rec, _ = w.payee.Store.Get(ctx, rec.ID())
		if rec.BestSat != acked[rec.ID()] {
			t.Errorf("payee %s holds %d, acknowledged %d", rec.ID(), rec.BestSat, acked[rec.ID()])
		}
		if rec.BestSat == 0 {
			continue
		}
		if rec.State != store.StateSettled {
			t.Errorf("payee %s: %s, %d sat acknowledged", rec.ID(), rec.State, rec.BestSat)
			continue
		}
		payeeWant += rec.BestSat - w.fee(rec.CloseTxID)
	}
	if got := w.env.Confirmed(w.payeeW); got != payeeWant {
		t.Errorf("payee wallet %d, want %d (every acknowledged satoshi less settlement fees)", got, payeeWant)
	}

	// The honest payer: every pool spent, and it paid only what it signed.
	payerWant := payerStart
	recs, _ = w.payer.Store.List(ctx)
	for _, rec := range recs {
		agent.Reconcile(ctx, w.env.Chain, w.payer.Store, rec)
		rec, _ = w.payer.Store.Get(ctx, rec.ID())
		payerWant -= w.fee(rec.Channel.Outpoint.Hash.String())
		switch rec.State {
		case store.StateRefunded:
			payerWant -= w.fee(rec.CloseTxID)
		case store.StateSettled:
			tx := w.tx(rec.CloseTxID)
			var change int64
			for _, out := range tx.TxOut {
				if string(out.PkScript) == string(rec.Channel.PayerScript) {
					change += out.Value
				}
			}
			paid := rec.Channel.CapacitySat - change
			if paid > rec.SignedSat || paid < rec.AckedSat {
				t.Errorf("payer %s: settled %d, signed %d, acknowledged %d", rec.ID(), paid, rec.SignedSat, rec.AckedSat)
			}
			payerWant -= paid
		default:
			t.Errorf("payer %s still %s: its pool was not returned", rec.ID(), rec.State)
		}
	}
	if got := w.env.Confirmed(w.payerW); got != payerWant {
		t.Errorf("payer wallet %d, want %d", got, payerWant)
	}
}

func soakCall(ctx context.Context, t *testing.T, w *world, kind string, secs int64, roguePayer *agent.Payer, roguePayee *agent.Payee) error {
	a, b := agent.Pipe()
	payer, payee := w.payer, w.payee
	var payerConn, payeeConn agent.Conn = a, b
	var last *paywire.Pay
	switch kind {
	case "payer-hangs-up", "payer-replays", "payer-floods":
		payer = roguePayer
		payerConn = &faulttest.Tamper{Conn: a, Out: func(m paywire.Message) paywire.Message {
			if p, ok := m.(*paywire.Pay); ok {
				cp := *p
				last = &cp
			}
			return m
		}}
	case "payer-stale":
		payer = roguePayer
		payerConn = &faulttest.Tamper{Conn: a, Out: func(m paywire.Message) paywire.Message {
			if m.Type() == paywire.TypeRefundRequest {
				w.env.Mine(9)
			}
			return m
		}}
	case "payee-mute":
		payee = roguePayee
		payeeConn = &faulttest.Tamper{Conn: b, Out: func(m paywire.Message) paywire.Message {
			if ack, ok := m.(*paywire.Ack); ok && ack.PaidSat > 1000*secs/2 {
				return nil
			}
			return m
		}}
	case "payee-fake-close":
		payee = roguePayee
		var tp *faulttest.Tamper
		tp = &faulttest.Tamper{Conn: b, In: func(m paywire.Message) paywire.Message {
			if c, ok := m.(*paywire.Close); ok {
				cl := &paywire.Closed{ChannelID: c.ChannelID, PaidSat: 1, SettlementTxID: fmt.Sprintf("%064x", 7)}
				cl.SetVersion(1)
				bs, _ := paywire.Encode(cl)
				tp.Conn.Send(ctx, bs)
				return nil
			}
			return m
		}}
		payeeConn = tp
	case "payee-vanishes":
		payee = roguePayee
	}
	done := make(chan error, 1)
	go func() { _, err := payee.Serve(ctx, payeeConn, "sip:caller@example.org"); done <- err }()
	s, err := payer.Open(ctx, payerConn, "sip:tutor@example.org")
	if kind == "payer-stale" {
		a.Close()
		<-done
		if err == nil {
			return errors.New("a stale window was accepted")
		}
		return nil
	}
	if err != nil {
		a.Close()
		<-done
		return fmt.Errorf("open: %w", err)
	}
	var payErr error
	for sec := int64(1); sec <= secs && payErr == nil; sec++ {
		payErr = s.Pay(ctx, sec*1000)
	}
	switch kind {
	case "honest", "payee-fake-close":
		if payErr == nil {
			_, payErr = s.Close(ctx, "hangup")
		}
	case "payer-replays":
		if last != nil {
			replay := *last
			send(t, ctx, a, &replay)
			time.Sleep(20 * time.Millisecond) // let the payee refuse it
		}
	case "payer-floods":
		for i := int64(1); i <= 100 && s.Pay(ctx, secs*1000+i) == nil; i++ {
		}
	}
	if payErr != nil && kind != "payee-mute" {
		return fmt.Errorf("paying: %w", payErr)
	}
	a.Close()
	<-done
	return nil
}
