package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

const (
	price       = 60_000 // sat/min
	capacity    = 1_000_000
	payerFunds  = 2_000_000
	pollingStep = 20 * time.Millisecond
)

// world is a regtest node, a payer and a payee, each with its own wallet
// and store, as two real nodes would have.
type world struct {
	t              *testing.T
	env            *regtest.Env
	payer          *agent.Payer
	payee          *agent.Payee
	payerW, payeeW *wallet.Wallet
}

func newWorld(t *testing.T) *world {
	t.Helper()
	env := regtest.New(t)
	w := &world{t: t, env: env}
	w.payerW, _ = env.NewWallet("payer", "")
	w.payeeW, _ = env.NewWallet("payee", "")
	addr, _ := w.payerW.NewAddress()
	env.Fund(addr, payerFunds)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w.payer = &agent.Payer{Wallet: w.payerW, Chain: env.Chain, Store: openStore(t, "payer.db"), CapacitySat: capacity, MaxPriceSatPerMin: 60_000, Log: log}
	// Fees are fixed on regtest: no headroom, so the first second (1,000 sat) is
	// above the minimum payment and amounts stay round.
	w.payee = &agent.Payee{Wallet: w.payeeW, Chain: env.Chain, Store: openStore(t, "payee.db"), PriceSatPerMin: price, Poll: pollingStep, Log: log, FeeHeadroom: 1}
	return w
}

func openStore(t *testing.T, name string) *store.DB {
	db, err := store.Open(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type served struct {
	res *agent.PayeeResult
	err error
}

// call connects the payer to the payee and opens a channel.
func (w *world) call(ctx context.Context) (*agent.PayerSession, agent.Conn, chan served) {
	w.t.Helper()
	a, b := agent.Pipe()
	done := make(chan served, 1)
	go func() {
		res, err := w.payee.Serve(ctx, b, "sip:caller@example.org")
		done <- served{res, err}
	}()
	s, err := w.payer.Open(ctx, a, "sip:tutor@example.org")
	if err != nil {
		w.t.Fatalf("open: %v", err)
	}
	return s, a, done
}

func (w *world) pay(ctx context.Context, s *agent.PayerSession, from, to int64) int64 {
	w.t.Helper()
	var owed int64
	for sec := from; sec <= to; sec++ {
		owed, _ = channel.Owed(price, sec)
		if err := s.Pay(ctx, owed); err != nil {
			w.t.Fatalf("second %d: %v", sec, err)
		}
	}
	return owed
}

// fee reads a transaction's fee from the node: its inputs' values, taken
// from the previous transactions, less its outputs.
func (w *world) fee(txid string) int64 {
	w.t.Helper()
	tx := w.tx(txid)
	var fee int64
	for _, in := range tx.TxIn {
		prev := w.tx(in.PreviousOutPoint.Hash.String())
		fee += prev.TxOut[in.PreviousOutPoint.Index].Value
	}
	for _, out := range tx.TxOut {
		fee -= out.Value
	}
	return fee
}

func (w *world) tx(txid string) *wire.MsgTx {
	w.t.Helper()
	h, err := chainhashFrom(txid)
	if err != nil {
		w.t.Fatal(err)
	}
	tx, err := w.env.Chain.Tx(context.Background(), h)
	if err != nil {
		w.t.Fatalf("tx %s: %v", txid, err)
	}
	return tx
}

// TestSixtyPaymentsSettle: open, 60 one-second payments, close; the node
// accepts every transaction and both wallets change by exactly the paid
// amount and the fees.
func TestSixtyPaymentsSettle(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	payerBefore, payeeBefore := w.env.Confirmed(w.payerW), w.env.Confirmed(w.payeeW)
	if payerBefore != payerFunds || payeeBefore != 0 {
		t.Fatalf("before: payer %d payee %d", payerBefore, payeeBefore)
	}
	s, _, done := w.call(ctx)
	fundingTxID := s.Channel().Outpoint.Hash.String()
	paid := w.pay(ctx, s, 1, 60)
	if paid != price {
		t.Fatalf("paid %d for a minute at %d sat/min", paid, price)
	}
	closed, err := s.Close(ctx, "hangup")
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.res.PaidSat != paid || r.res.SettlementTxID != closed.SettlementTxID {
		t.Fatalf("payee: %+v %v", r.res, r.err)
	}
	w.env.Mine(1)

	fundingFee, settlementFee := w.fee(fundingTxID), w.fee(closed.SettlementTxID)
	if fundingFee <= 0 || settlementFee <= 0 {
		t.Fatalf("fees %d %d", fundingFee, settlementFee)
	}
	payerAfter, payeeAfter := w.env.Confirmed(w.payerW), w.env.Confirmed(w.payeeW)
	if payerAfter != payerBefore-paid-fundingFee {
		t.Errorf("payer: %d -> %d; want %d - %d paid - %d funding fee", payerBefore, payerAfter, payerBefore, paid, fundingFee)
	}
	if payeeAfter != payeeBefore+paid-settlementFee {
		t.Errorf("payee: %d -> %d; want + %d paid - %d settlement fee", payeeBefore, payeeAfter, paid, settlementFee)
	}
	// The stores agree with the chain.
	ctx2 := context.Background()
	id := s.Channel().ID()
	for _, db := range []agent.Store{w.payer.Store, w.payee.Store} {
		rec, err := db.Get(ctx2, id)
		if err != nil {
			t.Fatal(err)
		}
		agent.Reconcile(ctx2, w.env.Chain, db, rec)
		rec, _ = db.Get(ctx2, id)
		if rec.State != store.StateSettled || rec.CloseTxID != closed.SettlementTxID {
			t.Errorf("%s record: %s %s", rec.Role, rec.State, rec.CloseTxID)
		}
	}
}

// TestPayeeVanishes: the payee never settles. The node refuses the refund
// before its lock height and accepts it at it; the payer's watcher
// broadcasts it by itself; the payer gets its pool back less the fees.
func TestPayeeVanishes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.payee.MinExpiryBlocks, w.payee.MaxExpiryBlocks = 10, 20
	w.payee.KeepOpen = true // it will not settle when the call drops
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 5)
	conn.Close() // the payee is gone
	<-done
	id := s.Channel().ID()
	rec, err := w.payer.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	lock := rec.RefundTx.LockTime
	tip, _ := w.env.Chain.TipHeight(ctx)
	if int64(lock) != int64(tip)+10 {
		t.Fatalf("lock %d, tip %d", lock, tip)
	}

	// One block short: the node refuses the refund as non-final, and the
	// payer says how long to wait.
	w.env.Mine(lock - uint32(tip) - 1)
	if err := w.env.Chain.Broadcast(ctx, rec.RefundTx); !errors.Is(err, chain.ErrNonFinal) {
		t.Fatalf("refund one block early: %v", err)
	}
	var notYet *agent.ErrRefundNotYet
	if _, err := w.payer.Refund(ctx, id); !errors.As(err, &notYet) || notYet.LockTime != lock {
		t.Fatalf("Refund early: %v", err)
	}

	// The watcher takes the refund as soon as the tip reaches the lock.
	refunded := make(chan string, 1)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go w.payer.WatchRefunds(wctx, pollingStep, func(_, txid string) { refunded <- txid })
	w.env.Mine(1)
	var txid string
	select {
	case txid = <-refunded:
	case <-ctx.Done():
		t.Fatal("no refund broadcast at the lock height")
	}
	w.env.Mine(1)
	fundingFee, refundFee := w.fee(s.Channel().Outpoint.Hash.String()), w.fee(txid)
	if got := w.env.Confirmed(w.payerW); got != payerFunds-fundingFee-refundFee {
		t.Fatalf("payer has %d, want %d - %d - %d", got, payerFunds, fundingFee, refundFee)
	}
	agent.Reconcile(ctx, w.env.Chain, w.payer.Store, rec)
	if rec, _ := w.payer.Store.Get(ctx, id); rec.State != store.StateRefunded {
		t.Fatalf("state %s", rec.State)
	}
	// The payee, coming back, cannot settle: the pool is spent, and it
	// recognises the refund instead of retrying.
	if _, err := w.payee.Settle(ctx, id); err != nil {
		t.Fatalf("late settle: %v", err)
	}
	if rec, _ := w.payee.Store.Get(ctx, id); rec.State != store.StateRefunded {
		t.Fatalf("payee state %s", rec.State)
	}
}

// TestPayerVanishes: the payer disappears mid-call; the payee settles its
// best payment alone.
func TestPayerVanishes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	paid := w.pay(ctx, s, 1, 10)
	conn.Close()
	r := <-done
	if r.res.SettlementTxID == "" || r.res.PaidSat != paid {
		t.Fatalf("payee result %+v, %v", r.res, r.err)
	}
	w.env.Mine(1)
	fee := w.fee(r.res.SettlementTxID)
	if got := w.env.Confirmed(w.payeeW); got != paid-fee {
		t.Fatalf("payee has %d, want %d - %d", got, paid, fee)
	}
	fundingFee := w.fee(s.Channel().Outpoint.Hash.String())
	if got := w.env.Confirmed(w.payerW); got != payerFunds-paid-fundingFee {
		t.Fatalf("payer has %d, want %d - %d - %d", got, payerFunds, paid, fundingFee)
	}
	// The payer's refund is now refused by the node: its input is spent.
	rec, _ := w.payer.Store.Get(ctx, s.Channel().ID())
	w.env.Mine(uint32(rec.RefundTx.LockTime))
	if err := w.env.Chain.Broadcast(ctx, rec.RefundTx); !errors.Is(err, chain.ErrConflict) {
		t.Fatalf("refund after settlement: %v", err)
	}
	if txid, err := w.payer.Refund(ctx, rec.ID()); err != nil || txid != r.res.SettlementTxID {
		t.Fatalf("Refund after settlement: %s %v", txid, err)
	}
	if rec, _ := w.payer.Store.Get(ctx, rec.ID()); rec.State != store.StateSettled {
		t.Fatalf("payer state %s", rec.State)
	}
}

// TestForgedSettlementRefused: a payee that claims more than the payer
// signed builds a settlement the node refuses.
func TestForgedSettlementRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.payee.KeepOpen = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	paid := w.pay(ctx, s, 1, 3)
	conn.Close()
	<-done
	rec, err := w.payee.Store.Get(ctx, s.Channel().ID())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := w.payeeW.ChannelKeyAt(rec.KeyIndex)
	payout, _ := w.payee.PayoutScript()
	forged, err := rec.Channel.SettlementTx(key, paid*10, rec.BestSig, channel.Settlement{PayoutScript: payout, FeeSat: 500})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.env.Chain.Broadcast(ctx, forged); !errors.Is(err, chain.ErrRejected) {
		t.Fatalf("forged settlement: %v", err)
	}
	// The honest one goes through.
	if _, err := w.payee.Settle(ctx, rec.ID()); err != nil {
		t.Fatal(err)
	}
}

// TestSecondConnectionEndsFirst: a payee serves a channel from one
// connection at a time; a payer resuming on a new connection ends the old
// session, which does not settle, and the channel goes on.
func TestSecondConnectionEndsFirst(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _, first := w.call(ctx) // the old connection stays up
	w.pay(ctx, s, 1, 3)

	a, b := agent.Pipe()
	second := make(chan served, 1)
	go func() {
		res, err := w.payee.Serve(ctx, b, "sip:caller@example.org")
		second <- served{res, err}
	}()
	s2, err := w.payer.Resume(ctx, a, s.Channel().ID())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-first:
		if r.res.SettlementTxID != "" {
			t.Fatalf("the replaced session settled: %+v", r.res)
		}
	case <-ctx.Done():
		t.Fatal("the first session was not ended by the second")
	}
	if s2.PaidSat() != 3000 {
		t.Fatalf("resumed at %d", s2.PaidSat())
	}
	w.pay(ctx, s2, 4, 5)
	closed, err := s2.Close(ctx, "done")
	if err != nil || closed.PaidSat != 5000 {
		t.Fatalf("close: %+v %v", closed, err)
	}
	if r := <-second; r.err != nil || r.res.SettlementTxID != closed.SettlementTxID {
		t.Fatalf("second session: %+v %v", r.res, r.err)
	}
}
