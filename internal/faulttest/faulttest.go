// Package faulttest is the test harness for faults mid-call: a regtest
// node that can be stopped and restarted (Node, Chain), a transport that
// can be cut (Conn), a store whose disk can fill (Store), agents that can
// die and come back on their data (World.RestartPayer, RestartPayee),
// pluggable peer behaviours (behaviour.go), and the money check against
// the chain (Pool, CheckPayer, CheckPayee): what each pool paid, read from
// the node, to the satoshi.
package faulttest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

// Price of the harness's calls (sat/min) and its fast second: a tick of
// Tick stands for one second of call (meter's rule for short ticks).
const (
	Price = 60_000
	Tick  = 25 * time.Millisecond
)

// World is a restartable node, a payer and a payee, each with its wallet
// file and store file, as two real machines would have.
type World struct {
	t    testing.TB
	dir  string
	Node *Node

	PayerDB, PayeeDB *Store
	Payer            *agent.Payer
	Payee            *agent.Payee
	payerCfg         agent.Payer
	opts             Options

	mu sync.Mutex
	// WatcherExits lists watchers (World.Watch) that returned by
	// themselves, with their error.
	WatcherExits []string
}

// Options shape a World; zero values take the defaults noted.
type Options struct {
	PayerSat    int64 // the payer's coins, default 2,000,000, in PayerCoins outputs
	PayerCoins  int   // default 1
	CapacitySat int64 // pools, default 200,000
	// ExpiryBlocks is the refund lock window the payee offers (min = max
	// = this), default 144.
	ExpiryBlocks uint32
	// Payee, if set, adjusts the payee agent (Metering, KeepOpen,
	// SettleMargin...) each time it is made.
	Payee func(*agent.Payee)
	// AckTimeout is how long the payer waits for an ack (agent default
	// when 0): short to give up on a mute payee quickly, long enough to
	// ride out a cut link.
	AckTimeout time.Duration
}

// New builds a World for t.
func New(t testing.TB, o Options) *World {
	t.Helper()
	if o.PayerSat == 0 {
		o.PayerSat = 2_000_000
	}
	if o.PayerCoins == 0 {
		o.PayerCoins = 1
	}
	if o.CapacitySat == 0 {
		o.CapacitySat = 200_000
	}
	if o.ExpiryBlocks == 0 {
		o.ExpiryBlocks = 144
	}
	w := &World{t: t, dir: t.TempDir(), Node: NewNode(t)}
	payerW := w.wallet("payer", true)
	w.wallet("payee", true)
	for i := 0; i < o.PayerCoins; i++ {
		a, err := payerW.NewAddress()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Node.Env.Faucet.Send(context.Background(), a, o.PayerSat/int64(o.PayerCoins), 2000); err != nil {
			t.Fatalf("faucet: %v", err)
		}
		w.Node.Mine(1)
	}
	w.payerCfg = agent.Payer{CapacitySat: o.CapacitySat, MaxPriceSatPerMin: Price, AckTimeout: o.AckTimeout}
	w.opts = o
	w.RestartPayer()
	w.RestartPayee()
	return w
}

func (w *World) wallet(name string, create bool) *wallet.Wallet {
	w.t.Helper()
	path := filepath.Join(w.dir, name+".json")
	var (
		wl  *wallet.Wallet
		err error
	)
	if create {
		wl, _, err = wallet.Create(path, w.Node.Chain, "")
	} else {
		wl, err = wallet.Open(path, w.Node.Chain, "")
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return wl
}

func (w *World) openStore(name string, old *Store) *Store {
	w.t.Helper()
	if old != nil {
		old.DB.Close()
	}
	db, err := store.Open(filepath.Join(w.dir, name+".db"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { db.Close() })
	return &Store{Store: db, DB: db}
}

// RestartPayer is the payer's process coming back after dying: a new
// agent on the same wallet file and store file (closed and opened again);
// what was only in the old agent's memory is gone.
func (w *World) RestartPayer() *agent.Payer {
	w.PayerDB = w.openStore("payer", w.PayerDB)
	p := w.payerCfg
	p.Wallet, p.Chain, p.Store = w.wallet("payer", false), w.Node.Chain, w.PayerDB
	w.Payer = &p
	return w.Payer
}

// RestartPayee is the payee's process coming back (see RestartPayer).
func (w *World) RestartPayee() *agent.Payee {
	w.PayeeDB = w.openStore("payee", w.PayeeDB)
	p := &agent.Payee{
		Wallet: w.wallet("payee", false), Chain: w.Node.Chain, Store: w.PayeeDB,
		PriceSatPerMin: Price, Poll: 20 * time.Millisecond, FeeHeadroom: 1, // regtest's fee is fixed
		MinExpiryBlocks: w.opts.ExpiryBlocks, MaxExpiryBlocks: w.opts.ExpiryBlocks,
	}
	if w.opts.Payee != nil {
		w.opts.Payee(p)
	}
	w.Payee = p
	return p
}

// Conn is an agent.Conn that a test can cut: Cut closes the transport
// under both sides at once, with no protocol message (a dropped
// DataChannel, a dead network), and CutAfterSends does it when this side
// has sent n more messages.
type Conn struct {
	agent.Conn
	mu    sync.Mutex
	sends int
	limit int // cut when sends reaches limit (0: never)
	cut   atomic.Bool
}

// NewConn wraps c.
func NewConn(c agent.Conn) *Conn { return &Conn{Conn: c} }

// Cut drops the transport now.
func (c *Conn) Cut() {
	c.cut.Store(true)
	c.Conn.Close()
}

// WasCut reports whether the transport was cut.
func (c *Conn) WasCut() bool { return c.cut.Load() }

// CutAfterSends cuts the transport once n more messages were sent by
// this side (the n-th is delivered, nothing after it).
func (c *Conn) CutAfterSends(n int) {
	c.mu.Lock()
	c.limit = c.sends + n
	c.mu.Unlock()
}

// Send implements agent.Conn.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	c.mu.Lock()
	if c.cut.Load() {
		c.mu.Unlock()
		return agent.ErrConnClosed
	}
	err := c.Conn.Send(ctx, msg)
	c.sends++
	cutNow := c.limit > 0 && c.sends >= c.limit
	c.mu.Unlock()
	if cutNow {
		c.Cut()
	}
	return err
}

// ErrDiskFull is what a full Store's writes fail with: store.ErrNotStored
// around ENOSPC, as SQLite's "database or disk is full" reaches the store.
var ErrDiskFull = fmt.Errorf("%w: %w", store.ErrNotStored, syscall.ENOSPC)

// Store is an agent.Store (the real SQLite one) whose disk can fill: while
// full, every write fails with ErrDiskFull and stores nothing; reads work.
type Store struct {
	agent.Store
	DB *store.DB
	// fullAfter >= 0: the disk fills after that many more payment
	// writes; -1: never (set with FillAfterPayments).
	mu        sync.Mutex
	full      bool
	fullAfter int
	armed     bool
	dead      bool
	afterIns  func()
	// Refused counts writes refused for lack of space.
	Refused atomic.Int64
}

// errDead is what a dead process's store "returns": nothing it does after
// its death reaches the disk.
var errDead = errors.New("faulttest: the process is dead")

// Kill makes the store's owner a dead process: no write from it lands
// any more (every chain action and every message of an agent follows a
// write, so nothing it does after this reaches the world).
func (s *Store) Kill() {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
}

// Fill makes the disk full (true) or frees it (false).
func (s *Store) Fill(full bool) {
	s.mu.Lock()
	s.full, s.armed = full, false
	s.mu.Unlock()
}

// FillAfterPayments lets n more payment writes through, then the disk is
// full.
func (s *Store) FillAfterPayments(n int) {
	s.mu.Lock()
	s.fullAfter, s.armed = n, true
	s.mu.Unlock()
}

func (s *Store) write(payment bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if payment && s.armed {
		if s.fullAfter == 0 {
			s.full, s.armed = true, false
		} else {
			s.fullAfter--
		}
	}
	if s.dead {
		return errDead
	}
	if s.full {
		s.Refused.Add(1)
		return ErrDiskFull
	}
	return nil
}

// AfterInsert runs f once, right after the next channel insert is stored
// (the payer's refund: its funding broadcast comes next).
func (s *Store) AfterInsert(f func()) {
	s.mu.Lock()
	s.afterIns = f
	s.mu.Unlock()
}

// Insert implements agent.Store.
func (s *Store) Insert(ctx context.Context, r store.Record) error {
	if err := s.write(false); err != nil {
		return err
	}
	if err := s.Store.Insert(ctx, r); err != nil {
		return err
	}
	s.mu.Lock()
	f := s.afterIns
	s.afterIns = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

// PayerSigned implements agent.Store.
func (s *Store) PayerSigned(ctx context.Context, id string, signed int64, sig []byte) error {
	if err := s.write(true); err != nil {
		return err
	}
	return s.Store.PayerSigned(ctx, id, signed, sig)
}

// PayerAcked implements agent.Store.
func (s *Store) PayerAcked(ctx context.Context, id string, acked int64) error {
	if err := s.write(false); err != nil {
		return err
	}
	return s.Store.PayerAcked(ctx, id, acked)
}

// PayeePayment implements agent.Store.
func (s *Store) PayeePayment(ctx context.Context, id string, paid int64, sig []byte) error {
	if err := s.write(true); err != nil {
		return err
	}
	return s.Store.PayeePayment(ctx, id, paid, sig)
}

// SetState implements agent.Store.
func (s *Store) SetState(ctx context.Context, id string, state store.State, closeTxID string) error {
	if err := s.write(false); err != nil {
		return err
	}
	return s.Store.SetState(ctx, id, state, closeTxID)
}

// StartClosing implements agent.Store.
func (s *Store) StartClosing(ctx context.Context, id string) (*store.Record, error) {
	if err := s.write(false); err != nil {
		return nil, err
	}
	return s.Store.StartClosing(ctx, id)
}

// Records lists a store's channels (every state).
func (s *Store) Records(t testing.TB) []*store.Record {
	t.Helper()
	recs, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Record reads one channel.
func (s *Store) Record(t testing.TB, id string) *store.Record {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("channel %s: %v", id, err)
	}
	return r
}

// Pool is what happened to a channel's pool on chain.
type Pool struct {
	Spent     bool
	Confirmed bool
	SpendTxID string
	// PaidSat is what the pool paid the payee: the capacity less what went
	// back to the payer's script (its change or its refund, plus the
	// refund's fee); 0 for a refund.
	PaidSat int64
	// PayerSat is what came back to the payer's script.
	PayerSat int64
	// FeeSat is the spending transaction's fee.
	FeeSat   int64
	Refunded bool
}

// Pool reads a channel's pool from the node: the transaction spending it
// and its outputs. A refund is recognised as the transaction whose only
// output pays the payer's script.
func (w *World) Pool(t testing.TB, rec *store.Record) Pool {
	t.Helper()
	ctx := context.Background()
	ch := rec.Channel
	sp, err := w.Node.Chain.SpendOf(ctx, ch.Outpoint, ch.PkScript)
	if err != nil {
		t.Fatalf("spend of %s: %v", ch.ID(), err)
	}
	if sp == nil {
		return Pool{}
	}
	tx, err := w.Node.Tx(sp.TxID)
	if err != nil {
		t.Fatalf("tx %s: %v", sp.TxID, err)
	}
	if len(tx.TxIn) != 1 || tx.TxIn[0].PreviousOutPoint != ch.Outpoint {
		t.Fatalf("%s spends %d inputs, not the pool alone", sp.TxID, len(tx.TxIn))
	}
	p := Pool{Spent: true, Confirmed: sp.Confirmations > 0, SpendTxID: sp.TxID.String(), FeeSat: ch.CapacitySat}
	var other int64
	for _, o := range tx.TxOut {
		p.FeeSat -= o.Value
		if string(o.PkScript) == string(ch.PayerScript) {
			p.PayerSat += o.Value
		} else {
			other += o.Value
		}
	}
	p.Refunded = other == 0
	if p.Refunded {
		p.PaidSat = 0
	} else {
		// The settlement: output 0 is the payer's change exactly as signed
		// (capacity - paid), the fee comes out of the payee's share.
		p.PaidSat = ch.CapacitySat - p.PayerSat
		if other+p.FeeSat != p.PaidSat {
			t.Fatalf("settlement %s: payee output %d + fee %d != paid %d", p.SpendTxID, other, p.FeeSat, p.PaidSat)
		}
	}
	return p
}

// Money is the end of a test's accounting.
type Money struct {
	Channels    int
	SettledSat  int64 // paid to the payee on chain
	RefundedSat int64 // pools (less fees) back to the payer by refund
	Refunds     int
	Settlements int
}

// CheckPayer asserts, for every channel of the payer's store, the payer's
// guarantees: its pool is spent and confirmed on chain (settled or
// refunded, never stuck) and never paid the payee more than the payer
// signed. Unless the payee may cheat (CheckPayerAgainst), also that the
// payee got at least what it acknowledged.
func (w *World) CheckPayer(t testing.TB) Money {
	t.Helper()
	return w.CheckPayerAgainst(t, true)
}

// CheckPayerAgainst is CheckPayer; honestPayee false drops the check that
// is the payee's own interest (a payee that never settles gets nothing,
// and the payer its refund).
func (w *World) CheckPayerAgainst(t testing.TB, honestPayee bool) Money {
	t.Helper()
	var m Money
	for _, rec := range w.PayerDB.Records(t) {
		m.Channels++
		if rec.State == store.StateRefunded && rec.CloseTxID == "" {
			// Recover found the funding's coins spent elsewhere before it
			// was ever broadcast: no pool, nothing acknowledged on it.
			st, err := w.Node.Chain.TxStatus(context.Background(), rec.Channel.Outpoint.Hash)
			if err != nil || st.Known || rec.AckedSat != 0 {
				t.Errorf("payer channel %s marked never funded: funding known %v (%v), acked %d", rec.ID(), st.Known, err, rec.AckedSat)
			}
			continue
		}
		p := w.Pool(t, rec)
		if !p.Spent || !p.Confirmed {
			t.Errorf("payer channel %s (%s, acked %d): pool not spent on chain (spent %v, confirmed %v)", rec.ID(), rec.State, rec.AckedSat, p.Spent, p.Confirmed)
			continue
		}
		if (honestPayee && p.PaidSat < rec.AckedSat) || p.PaidSat > rec.SignedSat {
			t.Errorf("payer channel %s: pool paid the payee %d on chain; the payer signed %d, the payee acknowledged %d", rec.ID(), p.PaidSat, rec.SignedSat, rec.AckedSat)
		}
		if p.Refunded {
			m.Refunds++
			m.RefundedSat += p.PayerSat
		} else {
			m.Settlements++
			m.SettledSat += p.PaidSat
		}
	}
	return m
}

// CheckPayee asserts, for every channel of the payee's store with a
// payment, that the pool was settled on chain for exactly the best payment
// the payee stored (and so acknowledged at most), confirmed.
func (w *World) CheckPayee(t testing.TB) Money {
	t.Helper()
	var m Money
	for _, rec := range w.PayeeDB.Records(t) {
		m.Channels++
		p := w.Pool(t, rec)
		if rec.BestSat == 0 {
			if p.Spent && !p.Refunded {
				t.Errorf("payee channel %s: settled %d with no payment stored", rec.ID(), p.PaidSat)
			}
			continue
		}
		switch {
		case !p.Spent || !p.Confirmed:
			t.Errorf("payee channel %s (%s): best payment %d not settled on chain (spent %v, confirmed %v)", rec.ID(), rec.State, rec.BestSat, p.Spent, p.Confirmed)
		case p.PaidSat != rec.BestSat:
			t.Errorf("payee channel %s: settled %d on chain, the payee stored %d (refunded %v)", rec.ID(), p.PaidSat, rec.BestSat, p.Refunded)
		default:
			m.Settlements++
			m.SettledSat += p.PaidSat
		}
	}
	return m
}

// Eventually polls cond every 20 ms until it holds or d passes.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// IsConnErr reports whether err is the transport going away (what a side
// sees when the call drops), as opposed to a protocol or money error.
func IsConnErr(err error) bool {
	return errors.Is(err, agent.ErrConnClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Watch runs the agents' watchers as `paysip payee` and the demo do
// (Payee.WatchExpiries, Payer.WatchRefunds), polling every poll, until the
// returned stop is called. Call it again after an agent restarts.
// A watcher that returns before stop is recorded in WatcherExits.
func (w *World) Watch(ctx context.Context, poll time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	payer, payee := w.Payer, w.Payee
	exit := func(name string, err error) {
		if ctx.Err() == nil {
			w.mu.Lock()
			w.WatcherExits = append(w.WatcherExits, fmt.Sprintf("%s: %v", name, err))
			w.mu.Unlock()
		}
	}
	wg.Add(2)
	go func() { defer wg.Done(); exit("Payee.WatchExpiries", payee.WatchExpiries(ctx, poll)) }()
	go func() { defer wg.Done(); exit("Payer.WatchRefunds", payer.WatchRefunds(ctx, poll, nil)) }()
	return func() { cancel(); wg.Wait() }
}

// Exits returns the watchers that stopped on their own so far.
func (w *World) Exits() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.WatcherExits...)
}
