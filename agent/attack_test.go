package agent_test

// Attacks on a real regtest node: a scripted dishonest payee against our
// honest payer, and a scripted dishonest payer against our honest payee.
// Each attack is refused with a reason the peer can read, logged at warn,
// and the honest side's wallet is checked on chain to the satoshi.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/faulttest"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/txbuild"
)

// logbook keeps log records, to check that an attack was logged at warn.
type logbook struct {
	mu   sync.Mutex
	recs []string
}

func (l *logbook) Enabled(context.Context, slog.Level) bool { return true }
func (l *logbook) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logbook) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logbook) WithGroup(string) slog.Handler      { return l }

// warned reports whether a WARN record contains every fragment.
func (l *logbook) warned(fragments ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		ok := strings.HasPrefix(r, "WARN")
		for _, f := range fragments {
			ok = ok && strings.Contains(r, f)
		}
		if ok {
			return true
		}
	}
	return false
}

func (l *logbook) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.recs, "\n")
}

func send(t *testing.T, ctx context.Context, c agent.Conn, m paywire.Message) {
	t.Helper()
	m.SetVersion(1)
	b, err := paywire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, ctx context.Context, c agent.Conn) paywire.Message {
	t.Helper()
	b, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	m, err := paywire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// attackWorld is a world whose honest side logs into a logbook.
func attackWorld(t *testing.T) (*world, *logbook) {
	w := newWorld(t)
	lb := &logbook{}
	w.payer.Log, w.payee.Log = slog.New(lb), slog.New(lb)
	return w, lb
}

// settled mines a block and returns the confirmed balances.
func (w *world) balances() (payer, payee int64) {
	w.env.Mine(1)
	return w.env.Confirmed(w.payerW), w.env.Confirmed(w.payeeW)
}

// --- A dishonest payee against our payer ---

// TestHostilePayeeTerms: terms built to drain the payer (absurd price, a
// pool above what the user allows, a refund locked for ages, a first
// payment above the budget) are refused before anything is funded: the
// payer's wallet is untouched on chain and its store is empty.
func TestHostilePayeeTerms(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tip, _ := w.env.Chain.TipHeight(ctx)
	key, _ := btcec.NewPrivateKey()
	payout, _ := w.payeeW.NewScript()
	base := channel.Terms{PayeeKey: key.PubKey(), PriceSatPerMin: price, PayoutScript: payout, MinChannelSat: 100_000,
		MinExpiryHeight: uint32(tip) + 24, MaxExpiryHeight: uint32(tip) + 1008, MinPaymentSat: 1000, MinStepSat: 1}
	for _, c := range []struct {
		name, reason string
		mod          func(*channel.Terms)
	}{
		{"price", "price 60000000000 sat/min above the caller's limit 60000", func(t *channel.Terms) { t.PriceSatPerMin = 60_000_000_000 }},
		{"pool", "minimum pool 1900000 sat above the caller's limit 1000000", func(t *channel.Terms) { t.MinChannelSat = 1_900_000 }},
		{"window", "refund window starts at height 499999999", func(t *channel.Terms) {
			t.MinExpiryHeight, t.MaxExpiryHeight = 499_999_999, 499_999_999
		}},
		{"first payment", "minimum first payment 50000 sat above the caller's budget 5000", func(t *channel.Terms) { t.MinPaymentSat = 50_000 }},
		{"first payment without a budget", "minimum first payment 90000 sat above what a first payment needs (10000)", func(t *channel.Terms) { t.MinPaymentSat = 90_000 }},
	} {
		w.payer.MaxFirstPaymentSat = 0
		if c.name == "first payment" {
			w.payer.MaxFirstPaymentSat = 5_000
		}
		a, b := agent.Pipe()
		errc := make(chan error, 1)
		go func() { _, err := w.payer.Open(ctx, a, "sip:hostile@example.org"); errc <- err }()
		if _, ok := recv(t, ctx, b).(*paywire.Hello); !ok {
			t.Fatal("no hello")
		}
		terms := base
		c.mod(&terms)
		send(t, ctx, b, terms.Wire(1))
		m, ok := recv(t, ctx, b).(*paywire.Error)
		if !ok || m.Code != paywire.CodeBadTerms || !strings.Contains(m.Reason, c.reason) {
			t.Fatalf("%s: payee was told %+v", c.name, m)
		}
		if err := <-errc; !errors.Is(err, channel.ErrBadTerms) {
			t.Fatalf("%s: payer: %v", c.name, err)
		}
		if !lb.warned("refused the peer's message", c.reason) {
			t.Fatalf("%s: not logged at warn:\n%s", c.name, lb)
		}
	}
	if payer, _ := w.balances(); payer != payerFunds {
		t.Fatalf("payer wallet %d, want %d untouched", payer, payerFunds)
	}
	if recs, _ := w.payer.Store.List(ctx); len(recs) != 0 {
		t.Fatalf("payer stored %d channels", len(recs))
	}
}

// TestHostilePayeeBadRefundSignature: a refund signature that does not
// verify is refused; the funding is never broadcast.
func TestHostilePayeeBadRefundSignature(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	bad := &faulttest.Tamper{Conn: b, Out: func(m paywire.Message) paywire.Message {
		if rs, ok := m.(*paywire.RefundSigned); ok {
			rs.Sig = append([]byte(nil), rs.Sig...)
			rs.Sig[10] ^= 1
		}
		return m
	}}
	go w.payee.Serve(ctx, bad, "sip:caller@example.org")
	if _, err := w.payer.Open(ctx, a, "sip:hostile@example.org"); !errors.Is(err, channel.ErrBadSignature) {
		t.Fatalf("payer: %v", err)
	}
	if !lb.warned("refused the peer's message", "bad_signature") {
		t.Fatalf("not logged:\n%s", lb)
	}
	if payer, _ := w.balances(); payer != payerFunds {
		t.Fatalf("payer wallet %d, want %d untouched", payer, payerFunds)
	}
}

// TestHostilePayeeNeverAcks: a payee that keeps payments but never
// acknowledges them gets one payment: the payer stops after AckTimeout.
func TestHostilePayeeNeverAcks(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	w.payer.AckTimeout = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	mute := &faulttest.Tamper{Conn: b, Out: func(m paywire.Message) paywire.Message {
		if _, ok := m.(*paywire.Ack); ok {
			return nil
		}
		return m
	}}
	done := make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, mute, "sip:caller@example.org"); done <- served{res, err} }()
	s, err := w.payer.Open(ctx, a, "sip:hostile@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Pay(ctx, 1000); !errors.Is(err, agent.ErrAckTimeout) {
		t.Fatalf("pay: %v", err)
	}
	if !lb.warned("did not acknowledge") {
		t.Fatalf("not logged:\n%s", lb)
	}
	a.Close() // the payer hangs up; the payee settles what it holds
	r := <-done
	if r.res.SettlementTxID == "" {
		t.Fatalf("payee did not settle: %+v %v", r.res, r.err)
	}
	fundingFee := w.fee(s.Channel().Outpoint.Hash.String())
	payer, _ := w.balances()
	if payer != payerFunds-1000-fundingFee {
		t.Fatalf("payer %d, want %d - 1000 (the one payment signed) - %d", payer, payerFunds, fundingFee)
	}
}

// TestHostilePayeeDeniesPayment: a payee that acknowledged 3,000 sat and,
// on resume, claims to hold nothing does not make the payer pay twice.
func TestHostilePayeeDeniesPayment(t *testing.T) {
	t.Parallel()
	w, _ := attackWorld(t)
	w.payee.KeepOpen = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 3)
	conn.Close()
	<-done
	a, b := agent.Pipe()
	liar := &faulttest.Tamper{Conn: b, Out: func(m paywire.Message) paywire.Message {
		if o, ok := m.(*paywire.Open); ok {
			o.PaidSat = 0
		}
		return m
	}}
	done = make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, liar, "sip:caller@example.org"); done <- served{res, err} }()
	s2, err := w.payer.Resume(ctx, a, s.Channel().ID())
	if err != nil {
		t.Fatal(err)
	}
	if s2.PaidSat() != 3000 {
		t.Fatalf("after the payee's denial the payer counts %d, want 3000", s2.PaidSat())
	}
	w.pay(ctx, s2, 4, 4)
	closed, err := s2.Close(ctx, "hangup")
	if err != nil {
		t.Fatal(err)
	}
	<-done
	fundingFee := w.fee(s.Channel().Outpoint.Hash.String())
	payer, payee := w.balances()
	settleFee := w.fee(closed.SettlementTxID)
	if payer != payerFunds-4000-fundingFee || payee != 4000-settleFee {
		t.Fatalf("payer %d payee %d; want %d and %d", payer, payee, payerFunds-4000-fundingFee, 4000-settleFee)
	}
}

// TestHostilePayeeFakeSettlement: a payee that answers the payer's close
// with a settlement it never made (and never settles) does not keep the
// pool: the payer's watcher takes the refund at its lock time.
func TestHostilePayeeFakeSettlement(t *testing.T) {
	t.Parallel()
	w, _ := attackWorld(t)
	w.payee.MinExpiryBlocks, w.payee.MaxExpiryBlocks = 10, 20
	w.payee.KeepOpen = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	fake := sha256.Sum256([]byte("no such transaction"))
	var liar *faulttest.Tamper
	liar = &faulttest.Tamper{Conn: b, In: func(m paywire.Message) paywire.Message {
		if c, ok := m.(*paywire.Close); ok {
			// Never reaches the payee: the liar answers itself.
			cl := &paywire.Closed{ChannelID: c.ChannelID, PaidSat: 3000, SettlementTxID: fmt.Sprintf("%x", fake)}
			cl.SetVersion(1)
			bs, _ := paywire.Encode(cl)
			liar.Conn.Send(ctx, bs)
			return nil
		}
		return m
	}}
	go w.payee.Serve(ctx, liar, "sip:caller@example.org")
	s, err := w.payer.Open(ctx, a, "sip:hostile@example.org")
	if err != nil {
		t.Fatal(err)
	}
	w.pay(ctx, s, 1, 3)
	if _, err := s.Close(ctx, "hangup"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	rec, _ := w.payer.Store.Get(ctx, s.Channel().ID())
	tip, _ := w.env.Chain.TipHeight(ctx)
	w.env.Mine(rec.RefundTx.LockTime - uint32(tip))
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	refunded := make(chan string, 1)
	go w.payer.WatchRefunds(wctx, pollingStep, func(id, txid string) { refunded <- txid; wcancel() })
	var refund string
	select {
	case refund = <-refunded:
	case <-wctx.Done():
		t.Fatal("the payer never took its refund")
	}
	wcancel()
	fundingFee := w.fee(s.Channel().Outpoint.Hash.String())
	refundFee := w.fee(refund)
	if payer, _ := w.balances(); payer != payerFunds-fundingFee-refundFee {
		t.Fatalf("payer %d, want %d - fees %d %d", payer, payerFunds, fundingFee, refundFee)
	}
}

// --- A dishonest payer against our payee ---

// TestHostilePayerStaleWindow: a payer that lets the refund window go
// stale (holding its refund request, or its funding, while blocks come)
// to be served and then take its refund at once is refused before any
// payment; the payee neither acknowledges nor stores anything.
func TestHostilePayerStaleWindow(t *testing.T) {
	t.Parallel()
	for _, hold := range []string{paywire.TypeRefundRequest, paywire.TypeFunded} {
		t.Run(hold, func(t *testing.T) {
			w, lb := attackWorld(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a, b := agent.Pipe()
			slow := &faulttest.Tamper{Conn: a, Out: func(m paywire.Message) paywire.Message {
				if m.Type() == hold {
					w.env.Mine(25) // the window was tip+24 at the earliest
				}
				return m
			}}
			done := make(chan served, 1)
			go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); done <- served{res, err} }()
			_, err := w.payer.Open(ctx, slow, "sip:tutor@example.org")
			if err == nil || !strings.Contains(err.Error(), "bad_refund") {
				t.Fatalf("payer was not refused: %v", err)
			}
			r := <-done
			if !errors.Is(r.err, channel.ErrRefundLockTooNear) {
				t.Fatalf("payee: %v", r.err)
			}
			if !lb.warned("less than 18 blocks above the tip") {
				t.Fatalf("not logged:\n%s", lb)
			}
			if recs, _ := w.payee.Store.List(ctx); len(recs) != 0 {
				t.Fatalf("payee stored %d channels", len(recs))
			}
			if _, payee := w.balances(); payee != 0 {
				t.Fatalf("payee wallet %d", payee)
			}
		})
	}
}

// rawFunding prepares, as a dishonest payer would, a funding of the pool
// whose inputs signal replaceability (BIP125), and a replacement that
// spends the same coins back to the payer with a higher fee.
func rawFunding(t *testing.T, w *world, payerKey, payeeKey *btcec.PublicKey) (funding, replacement *wire.MsgTx) {
	t.Helper()
	ctx := context.Background()
	utxos, err := w.payerW.Coins(ctx, 1)
	if err != nil || len(utxos) == 0 {
		t.Fatalf("coins: %v", err)
	}
	coins := []txbuild.Coin{utxos[0].Coin}
	change, _ := w.payerW.NewScript()
	funding, _, err = channel.BuildFunding(coins, payerKey, payeeKey, capacity, change, regtest.FeeRate)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range funding.TxIn {
		in.Sequence = wire.MaxTxInSequenceNum - 2
	}
	if err := w.payerW.Sign(funding, coins); err != nil {
		t.Fatal(err)
	}
	replacement, _, _, err = txbuild.Fund(coins, nil, change, regtest.FeeRate*4)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.payerW.Sign(replacement, coins); err != nil {
		t.Fatal(err)
	}
	return funding, replacement
}

// rawOpen runs a payer's side of the opening by hand, with the funding
// that fund builds, up to the funded message (sent, not answered); the
// refund's lock is the earliest the payee offers (see rawOpenAt).
func rawOpen(t *testing.T, ctx context.Context, w *world, a agent.Conn, fund func(payer, payee *btcec.PublicKey) *wire.MsgTx) {
	t.Helper()
	rawOpenAt(t, ctx, w, a, func(*channel.Terms) uint32 { return 0 }, fund)
}

// TestHostilePayerUnconfirmedParent: a funding that spends an unconfirmed
// transaction (which could itself be replaced) is not served until it
// confirms.
func TestHostilePayerUnconfirmedParent(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The parent: the payer pays itself, unconfirmed.
	self, _ := w.payerW.NewAddress()
	parent, err := w.payerW.Send(ctx, self, capacity+50_000, regtest.FeeRate)
	if err != nil {
		t.Fatal(err)
	}
	a, b := agent.Pipe()
	done := make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); done <- served{res, err} }()
	rawOpen(t, ctx, w, a, func(payer, payee *btcec.PublicKey) *wire.MsgTx {
		var coin txbuild.Coin
		for i, out := range parent.TxOut {
			if out.Value == capacity+50_000 {
				coin = txbuild.Coin{Outpoint: wire.OutPoint{Hash: parent.TxHash(), Index: uint32(i)}, Value: out.Value, PkScript: out.PkScript}
			}
		}
		change, _ := w.payerW.NewScript()
		funding, _, err := channel.BuildFunding([]txbuild.Coin{coin}, payer, payee, capacity, change, regtest.FeeRate)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.payerW.Sign(funding, []txbuild.Coin{coin}); err != nil {
			t.Fatal(err)
		}
		return funding
	})
	time.Sleep(10 * pollingStep)
	if !strings.Contains(lb.String(), "spends an unconfirmed transaction") {
		t.Fatalf("zero-conf taken:\n%s", lb)
	}
	next := recvAsync(ctx, a)
	select {
	case m := <-next:
		t.Fatalf("opened before a confirmation: %s", m)
	case <-time.After(5 * pollingStep):
	}
	w.env.Mine(1)
	select {
	case b := <-next:
		if m, err := paywire.Decode(b); err != nil || m.Type() != paywire.TypeOpen {
			t.Fatalf("after a confirmation: %s", b)
		}
	case <-ctx.Done():
		t.Fatal("not opened after a confirmation")
	}
	a.Close()
	<-done
}

func recvAsync(ctx context.Context, c agent.Conn) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		if b, err := c.Recv(ctx); err == nil {
			ch <- b
		}
	}()
	return ch
}

// TestHostilePayerReplacesFunding: a funding that signals replaceability
// is not trusted unconfirmed: the payee waits for a confirmation, and when
// the payer replaces it meanwhile the session ends with nothing served.
func TestHostilePayerReplacesFunding(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := agent.Pipe()
	done := make(chan served, 1)
	go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); done <- served{res, err} }()

	var replacement *wire.MsgTx
	rawOpen(t, ctx, w, a, func(payer, payee *btcec.PublicKey) *wire.MsgTx {
		var funding *wire.MsgTx
		funding, replacement = rawFunding(t, w, payer, payee)
		return funding
	})
	// The payee waits for a confirmation instead of opening.
	deadline := time.Now().Add(3 * time.Second)
	for !lb.warned() && !strings.Contains(lb.String(), "signals replaceability") && time.Now().Before(deadline) {
		time.Sleep(pollingStep)
	}
	if !strings.Contains(lb.String(), "signals replaceability") {
		t.Fatalf("the payee did not refuse zero-conf:\n%s", lb)
	}
	// The payer replaces its funding before it confirms.
	if err := w.env.Chain.Broadcast(ctx, replacement); err != nil {
		t.Fatalf("btcd refused the replacement: %v", err)
	}
	m, ok := recv(t, ctx, a).(*paywire.Error)
	if !ok || m.Code != paywire.CodeBadFunding {
		t.Fatalf("payer was told %+v", m)
	}
	r := <-done
	if !errors.Is(r.err, agent.ErrFundingGone) || r.res != nil && r.res.PaidSat != 0 {
		t.Fatalf("payee: %+v %v", r.res, r.err)
	}
	if recs, _ := w.payee.Store.List(ctx); len(recs) != 0 {
		t.Fatalf("payee stored %d channels", len(recs))
	}
}

// TestHostilePayerDoubleSpend: our own fundings are final, so a payer that
// tries to double spend the funding's inputs after being served is refused
// by the node, and the payee settles every acknowledged satoshi.
func TestHostilePayerDoubleSpend(t *testing.T) {
	t.Parallel()
	w, _ := attackWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	rec, _ := w.payer.Store.Get(ctx, s.Channel().ID())
	for _, in := range rec.FundingTx.TxIn {
		if in.Sequence < wire.MaxTxInSequenceNum-1 {
			t.Fatalf("our funding signals replaceability: sequence %#x", in.Sequence)
		}
	}
	w.pay(ctx, s, 1, 5)
	// The double spend: the funding's first input back to the payer.
	prev := w.tx(rec.FundingTx.TxIn[0].PreviousOutPoint.Hash.String())
	op := rec.FundingTx.TxIn[0].PreviousOutPoint
	coins := []txbuild.Coin{{Outpoint: op, Value: prev.TxOut[op.Index].Value, PkScript: prev.TxOut[op.Index].PkScript}}
	back, _ := w.payerW.NewScript()
	ds, _, _, err := txbuild.Fund(coins, nil, back, regtest.FeeRate*10)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.payerW.Sign(ds, coins); err != nil {
		t.Fatal(err)
	}
	if err := w.env.Chain.Broadcast(ctx, ds); !errors.Is(err, chain.ErrConflict) && !errors.Is(err, chain.ErrRejected) {
		t.Fatalf("the node took the double spend: %v", err)
	}
	conn.Close()
	r := <-done
	if r.res.PaidSat != 5000 || r.res.SettlementTxID == "" {
		t.Fatalf("payee: %+v %v", r.res, r.err)
	}
	settleFee := w.fee(r.res.SettlementTxID)
	if _, payee := w.balances(); payee != 5000-settleFee {
		t.Fatalf("payee %d, want 5000 - %d", payee, settleFee)
	}
}

// TestHostilePayerMessages: a payer that replays an old payment, floods
// payments, or sends a huge message is refused with a readable error and
// logged at warn; the payee settles exactly what it acknowledged.
func TestHostilePayerMessages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, code, log string
		attack          func(t *testing.T, ctx context.Context, w *world, s *agent.PayerSession, raw agent.Conn, last *paywire.Pay) int64
	}{
		{"replay", paywire.CodePaymentTooLow, "payment_too_low", func(t *testing.T, ctx context.Context, w *world, s *agent.PayerSession, raw agent.Conn, last *paywire.Pay) int64 {
			old := *last
			w.pay(ctx, s, 4, 5)
			send(t, ctx, raw, &old)
			return 5000
		}},
		{"flood", paywire.CodeBadPayment, "payer floods payments", func(t *testing.T, ctx context.Context, w *world, s *agent.PayerSession, raw agent.Conn, last *paywire.Pay) int64 {
			var acked int64 = 3000
			for i := int64(1); i <= 1000; i++ {
				if err := s.Pay(ctx, 3000+i); err != nil {
					break
				}
				acked = 3000 + i
			}
			return acked
		}},
		{"huge", paywire.CodeBadMessage, "bad message from payer", func(t *testing.T, ctx context.Context, w *world, s *agent.PayerSession, raw agent.Conn, last *paywire.Pay) int64 {
			raw.Send(ctx, bytes.Repeat([]byte("x"), 1<<20))
			return 3000
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w, lb := attackWorld(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a, b := agent.Pipe()
			var last *paywire.Pay
			var mu sync.Mutex
			spy := &faulttest.Tamper{Conn: a, Out: func(m paywire.Message) paywire.Message {
				if p, ok := m.(*paywire.Pay); ok && p.PaidSat == 3000 {
					mu.Lock()
					cp := *p
					last = &cp
					mu.Unlock()
				}
				return m
			}, In: func(m paywire.Message) paywire.Message {
				if e, ok := m.(*paywire.Error); ok && e.Code != c.code {
					t.Errorf("payer told %s: %s", e.Code, e.Reason)
				}
				return m
			}}
			done := make(chan served, 1)
			go func() { res, err := w.payee.Serve(ctx, b, "sip:caller@example.org"); done <- served{res, err} }()
			s, err := w.payer.Open(ctx, spy, "sip:tutor@example.org")
			if err != nil {
				t.Fatal(err)
			}
			w.pay(ctx, s, 1, 3)
			want := c.attack(t, ctx, w, s, a, last)
			r := <-done
			if r.err == nil || r.res.PaidSat != want || r.res.SettlementTxID == "" {
				t.Fatalf("payee: %+v %v (want %d settled)", r.res, r.err, want)
			}
			if !lb.warned(c.log) {
				t.Fatalf("not logged at warn:\n%s", lb)
			}
			settleFee := w.fee(r.res.SettlementTxID)
			if _, payee := w.balances(); payee != want-settleFee {
				t.Fatalf("payee %d, want %d - %d", payee, want, settleFee)
			}
		})
	}
}

// TestHostilePayerAbandonsChannels: sessions that never fund are bounded:
// at most MaxPending at once (the next is told the payee is busy), each
// ended after HandshakeTimeout.
func TestHostilePayerAbandonsChannels(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	w.payee.MaxPending, w.payee.HandshakeTimeout = 3, 500*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ends []chan error
	var conns []agent.Conn
	for i := 0; i < 3; i++ {
		a, b := agent.Pipe()
		end := make(chan error, 1)
		go func() { _, err := w.payee.Serve(ctx, b, "sip:abandoner@example.org"); end <- err }()
		send(t, ctx, a, &paywire.Hello{Versions: []int{1}})
		if _, ok := recv(t, ctx, a).(*paywire.Terms); !ok {
			t.Fatal("no terms")
		}
		ends, conns = append(ends, end), append(conns, a)
	}
	a, b := agent.Pipe()
	go w.payee.Serve(ctx, b, "sip:abandoner@example.org")
	if m, ok := recv(t, ctx, a).(*paywire.Error); !ok || m.Code != paywire.CodeChannelBusy {
		t.Fatalf("fourth session: %+v", m)
	}
	for _, end := range ends {
		if err := <-end; !errors.Is(err, agent.ErrHandshakeTimeout) {
			t.Fatalf("abandoned session ended with %v", err)
		}
	}
	if !lb.warned("channel not opened in time") || !lb.warned("too many channels being opened") {
		t.Fatalf("not logged:\n%s", lb)
	}
	// Room again for an honest payer (with time to open on a slow machine).
	w.payee.HandshakeTimeout = time.Minute
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 1)
	conn.Close()
	<-done
}

// TestHostileResume: whoever knows a channel's id cannot take over its
// payer's session: a resume proof not signed by the channel's payer key is
// refused, and the owner's live session goes on.
func TestHostileResume(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	w.payee.KeepOpen = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, conn, done := w.call(ctx)
	w.pay(ctx, s, 1, 3)
	id := s.Channel().ID()

	a, b := agent.Pipe()
	thief := make(chan error, 1)
	go func() { _, err := w.payee.Serve(ctx, b, "sip:thief@example.org"); thief <- err }()
	send(t, ctx, a, &paywire.Hello{Versions: []int{1}, Resume: id})
	terms, ok := recv(t, ctx, a).(*paywire.Terms)
	if !ok || len(terms.Challenge) != paywire.ChallengeSize {
		t.Fatalf("terms %+v", terms)
	}
	k, _ := btcec.NewPrivateKey()
	d := paywire.ResumeDigest(id, terms.Challenge, terms.PayeeKey)
	send(t, ctx, a, &paywire.ResumeProof{ChannelID: id, Sig: ecdsa.Sign(k, d[:]).Serialize()})
	if m, ok := recv(t, ctx, a).(*paywire.Error); !ok || m.Code != paywire.CodeBadSignature {
		t.Fatalf("thief was told %+v", m)
	}
	if err := <-thief; !errors.Is(err, channel.ErrResume) {
		t.Fatalf("thief's session: %v", err)
	}
	if !lb.warned("refused the peer's message", "resume proof") {
		t.Fatalf("not logged:\n%s", lb)
	}
	// The owner pays on.
	w.pay(ctx, s, 4, 5)
	closed, err := s.Close(ctx, "hangup")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	<-done
	settleFee := w.fee(closed.SettlementTxID)
	if _, payee := w.balances(); payee != 5000-settleFee {
		t.Fatalf("payee %d", payee)
	}
	rec, _ := w.payee.Store.Get(ctx, id)
	agent.Reconcile(ctx, w.env.Chain, w.payee.Store, rec)
	rec, _ = w.payee.Store.Get(ctx, id)
	if rec.State != store.StateSettled {
		t.Fatalf("state %s", rec.State)
	}
}

// TestSettlementEndsCall: a call still running when the chain comes within
// the settle margin of the refund's lock is ended and settled, and every
// satoshi the payer saw acknowledged is in the settlement: none after it
// (reproduced before the fix: settled at 10,000 sat, then acknowledged up
// to 60,000). The payer pays as fast as it can meanwhile, and the payee's
// expiry watcher runs too.
func TestSettlementEndsCall(t *testing.T) {
	t.Parallel()
	w, lb := attackWorld(t)
	w.payee.MinExpiryBlocks, w.payee.MaxExpiryBlocks = 10, 20 // lock ahead 8, margin 7
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go w.payee.WatchExpiries(ctx, pollingStep)
	s, _, done := w.call(ctx)
	paying := make(chan error, 1)
	go func() {
		for sec := int64(1); ; sec++ {
			if err := s.Pay(ctx, sec*1000); err != nil {
				paying <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	w.env.Mine(3) // tip + 7 reaches the lock: settle now
	var payErr error
	select {
	case payErr = <-paying:
	case <-ctx.Done():
		t.Fatal("the call went on past the settle margin")
	}
	r := <-done
	if !errors.Is(r.err, agent.ErrExpiryNear) || r.res.SettlementTxID == "" {
		t.Fatalf("payee: %+v %v", r.res, r.err)
	}
	acked := s.PaidSat()
	if r.res.PaidSat != acked {
		t.Fatalf("payee settled %d, the payer saw %d acknowledged (pay ended with %v)", r.res.PaidSat, acked, payErr)
	}
	if !strings.Contains(lb.String(), "refund lock near") { // the session's watch, or Recover's
		t.Fatalf("not logged:\n%s", lb)
	}
	settleFee := w.fee(r.res.SettlementTxID)
	if _, payee := w.balances(); payee != acked-settleFee {
		t.Fatalf("payee %d, want %d acknowledged - %d fee", payee, acked, settleFee)
	}
	// The payer may not resume it.
	a, _ := agent.Pipe()
	if _, err := w.payer.Resume(ctx, a, s.Channel().ID()); !errors.Is(err, agent.ErrNearExpiry) {
		t.Fatalf("resume: %v", err)
	}
}
