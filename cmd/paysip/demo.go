package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "demo", short: "the whole story on a real regtest node: fund, open a channel, pay per second, settle (or refund)",
			long: "Starts its own regtest btcd, SIP server, payee and caller in one process, in a temporary directory (or --datadir, kept), and tells the story of a paid call. --tick and --block-interval are shared with the other commands; -v logs the agents' events.",
			data: &demoCmd{a: a}}
	})
}

// demoCmd is 'paysip demo'.
type demoCmd struct {
	a         *app
	Scenario  string `long:"scenario" default:"hangup" choice:"hangup" choice:"payer-vanishes" choice:"payee-vanishes" description:"the story"`
	Seconds   int64  `long:"seconds" default:"20" description:"seconds of call"`
	Price     int64  `long:"price" default:"60000" description:"the payee's price, sat/min"`
	Capacity  int64  `long:"capacity" description:"the channel's pool, sat (0: sized to the call)"`
	AsJSON    bool   `long:"json" description:"print one JSON object with the figures at the end (the story goes to stderr)"`
	Transport string `long:"transport" default:"datachannel" choice:"datachannel" choice:"message" description:"where the payments go: a WebRTC DataChannel or in-dialog SIP MESSAGE"`
}

// demoReport is the --json output. Every on-chain figure is read from the
// node: transactions fetched back, fees as inputs minus outputs, balances
// from the wallets' coins on the chain.
type demoReport struct {
	Scenario         string  `json:"scenario"`
	PriceSatPerMin   int64   `json:"price_sat_per_min"`
	MinPaymentSat    int64   `json:"min_payment_sat"` // the payee's smallest first payment
	PoolReason       string  `json:"pool_reason"`     // why the pool has its size
	SecondsPaid      int64   `json:"seconds_paid"`
	Payments         int     `json:"payments"`
	PaidSat          int64   `json:"paid_sat"`
	ChannelID        string  `json:"channel_id"`
	FundingTxID      string  `json:"funding_txid"`
	FundingSat       int64   `json:"funding_sat"`
	FundingFeeSat    int64   `json:"funding_fee_sat"`
	SettlementTxID   string  `json:"settlement_txid,omitempty"`
	SettlementFeeSat *int64  `json:"settlement_fee_sat,omitempty"`
	SettledPaidSat   *int64  `json:"settled_paid_sat,omitempty"` // pool less the payer's change in the settlement
	RefundTxID       string  `json:"refund_txid,omitempty"`
	RefundFeeSat     *int64  `json:"refund_fee_sat,omitempty"`
	RefundLockHeight *uint32 `json:"refund_lock_height,omitempty"`
	Confirmations    int64   `json:"confirmations"`
	Payer            balance `json:"payer"`
	Payee            balance `json:"payee"`
}

type balance struct {
	BeforeSat int64 `json:"before_sat"`
	AfterSat  int64 `json:"after_sat"`
}

// Execute tells the story.
func (c *demoCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	// The demo's data lives in a temporary directory unless one is given.
	dir := ""
	if o := c.a.parser.FindOptionByLongName("datadir"); (o != nil && o.IsSet() && !o.IsSetDefault()) || os.Getenv("PAYSIP_DATADIR") != "" {
		dir = c.a.Node.Datadir
	}
	switch c.Scenario {
	case "hangup", "payer-vanishes", "payee-vanishes":
	default:
		return fmt.Errorf("unknown scenario %q (hangup, payer-vanishes, payee-vanishes)", c.Scenario)
	}
	if c.Seconds < 1 {
		return fmt.Errorf("--seconds must be at least 1")
	}
	out := io.Writer(os.Stdout)
	if c.AsJSON {
		out = os.Stderr
	}
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	level := slog.LevelWarn
	if c.a.Node.Verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "paysip-demo-*"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	d := &demo{ctx: ctx, dir: dir, log: log, say: say, params: &chaincfg.RegressionNetParams, transport: c.Transport, blockInterval: c.a.Node.BlockInterval}
	defer d.close()
	report, err := d.run(out, c.Scenario, c.Seconds, c.Price, c.Capacity, c.a.SIP.Tick)
	if errors.Is(err, agent.ErrPaymentLate) {
		err = fmt.Errorf("%w (the demo's payer fell behind its meter)", err)
	}
	if err != nil {
		return err
	}
	if c.AsJSON {
		b, _ := json.MarshalIndent(report, "", "  ")
		fmt.Println(string(b))
	}
	return nil
}

type demo struct {
	transport     string
	blockInterval time.Duration
	ctx           context.Context
	dir           string
	log           *slog.Logger
	say           func(string, ...any)
	params        *chaincfg.Params
	node          *btcnode.Node
	chain         *btcdrpc.Client
	faucet        *wallet.Wallet
	stores        []*store.DB
}

func (d *demo) close() {
	for _, s := range d.stores {
		s.Close()
	}
	if d.chain != nil {
		d.chain.Close()
	}
	if d.node != nil {
		d.node.Stop()
	}
}

func (d *demo) openWallet(name string) (*wallet.Wallet, *store.DB, error) {
	w, _, err := wallet.OpenOrCreate(filepath.Join(d.dir, name, "wallet.json"), d.chain, "")
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(filepath.Join(d.dir, name, "paysip.db"))
	if err != nil {
		return nil, nil, err
	}
	d.stores = append(d.stores, db)
	return w, db, nil
}

func (d *demo) mine(n uint32) error {
	_, err := d.node.Generate(n)
	return err
}

func (d *demo) confirmed(w *wallet.Wallet) (int64, error) {
	b, err := w.Balance(d.ctx)
	return b.Confirmed, err
}

func (d *demo) tx(txid string) (*wire.MsgTx, error) {
	h, err := chainhash.NewHashFromStr(txid)
	if err != nil {
		return nil, err
	}
	return d.chain.Tx(d.ctx, *h)
}

// fee reads a transaction's fee from the node.
func (d *demo) fee(txid string) (int64, error) {
	tx, err := d.tx(txid)
	if err != nil {
		return 0, err
	}
	var fee int64
	for _, in := range tx.TxIn {
		prev, err := d.chain.Tx(d.ctx, in.PreviousOutPoint.Hash)
		if err != nil {
			return 0, err
		}
		fee += prev.TxOut[in.PreviousOutPoint.Index].Value
	}
	for _, o := range tx.TxOut {
		fee -= o.Value
	}
	return fee, nil
}

func (d *demo) run(out io.Writer, scenario string, seconds, price, capacity int64, tick time.Duration) (*demoReport, error) {
	ctx := d.ctx
	rep := &demoReport{Scenario: scenario, PriceSatPerMin: price}
	d.say("paysip demo: scenario %s, %d s of call at %d sat/min", scenario, seconds, price)

	// The node: btcd on regtest, mining to a faucet wallet.
	var err error
	if d.faucet, _, err = wallet.OpenOrCreate(filepath.Join(d.dir, "faucet.json"), chain.Offline{Net: d.params}, ""); err != nil {
		return nil, err
	}
	mining, err := d.faucet.NewAddress()
	if err != nil {
		return nil, err
	}
	d.say("starting btcd (regtest) in %s; its first start builds it (about half a minute)", d.dir)
	if d.node, err = btcnode.StartRegtest(ctx, btcnode.Config{DataDir: filepath.Join(d.dir, "btcd"), MiningAddr: mining, Log: d.log, BlockInterval: d.blockInterval}); err != nil {
		return nil, err
	}
	if d.chain, err = btcdrpc.New(btcdrpc.Config{Host: d.node.RPCAddr, User: d.node.RPCUser, Pass: d.node.RPCPass, Params: d.params}); err != nil {
		return nil, err
	}
	if d.faucet, err = wallet.Open(filepath.Join(d.dir, "faucet.json"), d.chain, ""); err != nil {
		return nil, err
	}
	tip, _ := d.chain.TipHeight(ctx)
	d.say("btcd up at %s, height %d: segwit and CSV active", d.node.RPCAddr, tip)

	// Two wallets, funded by the faucet.
	payerW, payerDB, err := d.openWallet("payer")
	if err != nil {
		return nil, err
	}
	payeeW, payeeDB, err := d.openWallet("payee")
	if err != nil {
		return nil, err
	}
	rate, err := d.chain.FeeRate(ctx, 6)
	if err != nil {
		return nil, err
	}
	// The payer gets enough for three such calls (and at least 0.02 BTC).
	cost, err := channel.Owed(price, seconds)
	if err != nil {
		return nil, err
	}
	funds := max(2_000_000, 3*cost+100_000, 2*capacity)
	for _, f := range []struct {
		w      *wallet.Wallet
		amount int64
	}{{payerW, funds}, {payeeW, 100_000}} {
		a, err := f.w.NewAddress()
		if err != nil {
			return nil, err
		}
		if _, err := d.faucet.Send(ctx, a, f.amount, rate); err != nil {
			return nil, fmt.Errorf("faucet: %w", err)
		}
	}
	if err := d.mine(1); err != nil {
		return nil, err
	}
	if rep.Payer.BeforeSat, err = d.confirmed(payerW); err != nil {
		return nil, err
	}
	if rep.Payee.BeforeSat, err = d.confirmed(payeeW); err != nil {
		return nil, err
	}
	d.say("wallets funded: payer %d sat, payee %d sat (confirmed)", rep.Payer.BeforeSat, rep.Payee.BeforeSat)

	payer := &agent.Payer{Wallet: payerW, Chain: d.chain, Store: payerDB, Log: d.log}
	payee := &agent.Payee{Wallet: payeeW, Chain: d.chain, Store: payeeDB, PriceSatPerMin: price, Poll: 50 * time.Millisecond, Log: d.log,
		MinExpiryBlocks: 6, MaxExpiryBlocks: 1008, Metering: &meter.Payee{PriceSatPerMin: price, Tick: tick, Grace: max(5*tick, time.Second)}}
	if scenario == "payee-vanishes" {
		payee.KeepOpen = true // it will never settle
	}

	// SIP: the domain's server, the tutor registered with an account and
	// listed in the directory at its price; the caller anonymous.
	call, err := d.startSIP(ctx, payee, price)
	if err != nil {
		return nil, err
	}
	defer call.close()
	d.say("directory: found %s, %d sat/min", call.listing.AOR, call.listing.PriceSatPerMin)
	if d.transport == sipext.TransportMessage {
		d.say("calling %s (audio over WebRTC, payments in SIP MESSAGE), via the SIP proxy at %s...", call.listing.AOR, call.proxy)
	} else {
		d.say("calling %s over WebRTC (audio + the paysip DataChannel), via the SIP proxy at %s...", call.listing.AOR, call.proxy)
	}
	if err := call.dial(ctx); err != nil {
		return nil, err
	}
	served := call.served
	d.say("call answered; learning the payee's terms, preparing the pool, getting the refund signed...")
	// The directory's price is the most this caller pays.
	plan := paidcall.Plan{PriceSatPerMin: call.listing.PriceSatPerMin, Seconds: seconds, CapacitySat: capacity, Tick: tick, Close: scenario == "hangup"}
	if scenario == "payer-vanishes" {
		plan.Seconds = (seconds + 1) / 2
	}
	var ch *channel.Channel
	caller := &paidcall.Caller{Payer: payer, Log: d.log,
		OnOpen: func(r *paidcall.Result) {
			rep.ChannelID, rep.FundingSat, rep.MinPaymentSat, rep.PoolReason = r.ChannelID, r.CapacitySat, r.MinPaymentSat, r.Pool.Reason
			d.say("pool of %d sat: %s", r.Pool.CapacitySat, r.Pool.Reason)
		},
	}
	start := time.Now()
	caller.OnTick = func(t agent.Tick) {
		fmt.Fprintf(out, "\r  %5.1f s  payer: paid %8d sat, pool left %8d  |  payee: earned %8d sat ", float64(time.Since(start))/float64(tick), t.PaidSat, t.PoolLeft, t.PaidSat)
	}
	res, err := caller.Pay(ctx, call.leg.Conn, call.listing.AOR, plan)
	fmt.Fprintln(out)
	if err != nil {
		return nil, err
	}
	rec, err := payerDB.Get(ctx, res.ChannelID)
	if err != nil {
		return nil, err
	}
	ch = rec.Channel
	rep.FundingTxID = ch.Outpoint.Hash.String()
	d.say("channel %s: %d sat locked in the 2-of-2 pool; refund signed by the payee, locked until height %d", ch.ID(), ch.CapacitySat, ch.ExpiryHeight)
	rep.Payments, rep.SecondsPaid, rep.PaidSat = res.Payments, plan.Seconds, res.PaidSat
	d.say("%d s of call paid in %d payments: %d sat (the payee's minimum first payment: %d sat)", plan.Seconds, res.Payments, res.PaidSat, res.MinPaymentSat)

	var closeTxID string
	switch scenario {
	case "hangup":
		d.say("hung up: the payer asked the payee to settle")
		<-served
		closeTxID = res.Closed.SettlementTxID
		call.hangup()
	case "payer-vanishes":
		d.say("the payer vanishes mid-call (its WebRTC session drops without a word, no BYE)")
		call.callerGone()
		res := <-served
		if res == nil || res.SettlementTxID == "" {
			return nil, fmt.Errorf("the payee did not settle alone")
		}
		d.say("the payee settles its best payment alone")
		closeTxID = res.SettlementTxID
	case "payee-vanishes":
		d.say("the payee vanishes and never settles")
		call.payeeGone()
		<-served
		lock := ch.ExpiryHeight
		rep.RefundLockHeight = &lock
		tip, _ := d.chain.TipHeight(ctx)
		rec, err := payerDB.Get(ctx, ch.ID())
		if err != nil {
			return nil, err
		}
		if err := d.chain.Broadcast(ctx, rec.RefundTx); errors.Is(err, chain.ErrNonFinal) {
			d.say("at height %d the node refuses the refund: %v", tip, err)
		} else {
			return nil, fmt.Errorf("the node did not refuse the refund before its lock time: %v", err)
		}
		d.say("the refund is locked until height %d; the chain is at %d: mining %d blocks", lock, tip, int64(lock)-int64(tip))
		refunded := make(chan string, 1)
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		go payer.WatchRefunds(wctx, 50*time.Millisecond, func(_, txid string) { refunded <- txid })
		if int64(lock) > int64(tip) {
			if err := d.mine(lock - uint32(tip)); err != nil {
				return nil, err
			}
		}
		select {
		case closeTxID = <-refunded:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("no refund at the lock height")
		}
		d.say("the payer's watcher broadcast the refund")
	}
	if err := d.mine(1); err != nil {
		return nil, err
	}
	h, _ := chainhash.NewHashFromStr(closeTxID)
	st, err := d.chain.TxStatus(ctx, *h)
	if err != nil {
		return nil, err
	}
	rep.Confirmations = st.Confirmations
	if rep.FundingFeeSat, err = d.fee(rep.FundingTxID); err != nil {
		return nil, err
	}
	closeFee, err := d.fee(closeTxID)
	if err != nil {
		return nil, err
	}
	if scenario == "payee-vanishes" {
		rep.RefundTxID, rep.RefundFeeSat = closeTxID, &closeFee
	} else {
		rep.SettlementTxID, rep.SettlementFeeSat = closeTxID, &closeFee
		tx, err := d.tx(closeTxID)
		if err != nil {
			return nil, err
		}
		settled := rep.FundingSat
		if len(tx.TxOut) > 1 { // output 0 is the payer's change
			settled -= tx.TxOut[0].Value
		}
		rep.SettledPaidSat = &settled
	}
	if rep.Payer.AfterSat, err = d.confirmed(payerW); err != nil {
		return nil, err
	}
	if rep.Payee.AfterSat, err = d.confirmed(payeeW); err != nil {
		return nil, err
	}
	d.say("on chain, %d confirmation(s):", rep.Confirmations)
	d.say("  funding     %s  pool %d sat, fee %d sat", rep.FundingTxID, rep.FundingSat, rep.FundingFeeSat)
	if rep.RefundTxID != "" {
		d.say("  refund      %s  fee %d sat", rep.RefundTxID, closeFee)
	} else {
		d.say("  settlement  %s  payee paid %d sat, fee %d sat", rep.SettlementTxID, *rep.SettledPaidSat, closeFee)
	}
	d.say("  payer wallet %d -> %d sat (%+d)", rep.Payer.BeforeSat, rep.Payer.AfterSat, rep.Payer.AfterSat-rep.Payer.BeforeSat)
	d.say("  payee wallet %d -> %d sat (%+d)", rep.Payee.BeforeSat, rep.Payee.AfterSat, rep.Payee.AfterSat-rep.Payee.BeforeSat)
	return rep, nil
}

// demoCall is the demo's SIP side: server, tutor and caller user agents,
// and the two legs of the call.
type demoCall struct {
	d        *demo
	srv      *sipserver.Server
	proxy    string
	cancel   context.CancelFunc
	tutor    *sipua.UA
	caller   *sipua.UA
	listing  sipext.Listing
	leg      *paidcall.Leg // the caller's
	served   chan *agent.PayeeResult
	payeeLeg chan *paidcall.Leg // the tutor's, once answered
}

func (d *demo) startSIP(ctx context.Context, payee *agent.Payee, price int64) (*demoCall, error) {
	quietSIPGo()
	accounts, err := store.Open(filepath.Join(d.dir, "server.db"))
	if err != nil {
		return nil, err
	}
	d.stores = append(d.stores, accounts)
	const domain = "paysip.demo"
	password := randomPassword()
	if err := accounts.AddUser(ctx, "tutor", domain, password); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	c := &demoCall{d: d, cancel: cancel, served: make(chan *agent.PayeeResult, 1), payeeLeg: make(chan *paidcall.Leg, 1)}
	if c.srv, err = sipserver.New(sipserver.Config{Domain: domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Accounts: accounts, Chain: d.chain, Log: d.log}); err != nil {
		cancel()
		return nil, err
	}
	go c.srv.Run(sctx)
	select {
	case <-c.srv.Ready():
	case <-time.After(10 * time.Second):
		cancel()
		return nil, errors.New("SIP server did not start")
	}
	c.proxy = fmt.Sprintf("127.0.0.1:%d", c.srv.SIPPort())
	d.say("SIP server for %s up: %s (UDP/TCP), ws://127.0.0.1:%d/sip", domain, c.proxy, c.srv.HTTPPort())
	if c.tutor, err = sipua.New(sipua.Config{AOR: "sip:tutor@" + domain, Proxy: c.proxy, Username: "tutor", Password: password, Log: d.log}); err != nil {
		cancel()
		return nil, err
	}
	rtc := rtcconn.Config{LoopbackOnly: true, Audio: rtcconn.AudioTone}
	c.tutor.OnInvite(func(ic *sipua.IncomingCall) {
		err := paidcall.ServeCall(sctx, ic, rtc, payee, func(leg *paidcall.Leg) { c.payeeLeg <- leg },
			func(_ *paidcall.Leg, res *agent.PayeeResult, err error) {
				if !paidcall.CleanEnd(err) {
					d.log.Warn("payee session", "err", err)
				}
				c.served <- res
			})
		if err != nil {
			d.log.Warn("tutor refused the call", "err", err)
		}
	})
	if err := c.tutor.KeepRegistered(sctx, 300, &sipext.Offer{PriceSatPerMin: price, Name: "The tutor"}); err != nil {
		cancel()
		return nil, fmt.Errorf("tutor registration: %w", err)
	}
	entries, err := sipua.FetchDirectory(ctx, fmt.Sprintf("http://127.0.0.1:%d", c.srv.HTTPPort()))
	if err != nil || len(entries) == 0 {
		cancel()
		return nil, fmt.Errorf("directory: %v (%d entries)", err, len(entries))
	}
	c.listing = entries[0]
	if c.caller, err = sipua.New(sipua.Config{AOR: "sip:caller@" + domain, Proxy: c.proxy, Log: d.log}); err != nil {
		cancel()
		return nil, err
	}
	return c, nil
}

// dial calls the listed payee; the leg's payment connection is open.
func (c *demoCall) dial(ctx context.Context) error {
	var to sip.Uri
	if err := sip.ParseUri(c.listing.AOR, &to); err != nil {
		return err
	}
	leg, err := paidcall.Dial(ctx, c.caller, to, rtcconn.Config{LoopbackOnly: true}, c.d.transport)
	if err != nil {
		return err
	}
	c.leg = leg
	return nil
}

// hangup ends the call normally: BYE, WebRTC closed.
func (c *demoCall) hangup() {
	if c.leg != nil {
		c.leg.Hangup(context.Background(), "")
	}
}

// callerGone drops the caller's side without a word (no close, no BYE):
// its WebRTC session closes, and with the MESSAGE transport its user agent
// stops answering.
func (c *demoCall) callerGone() {
	c.leg.Peer.Close()
	if c.leg.Transport == sipext.TransportMessage {
		c.caller.Close()
		c.caller = nil
		c.leg = nil
	}
}

// payeeGone drops the payee's side of the call without a word (it keeps
// its channel open and never settles); the caller hangs up.
func (c *demoCall) payeeGone() {
	select {
	case l := <-c.payeeLeg:
		l.Peer.Close()
	default:
	}
	c.hangup()
}

func (c *demoCall) close() {
	c.hangup()
	if c.caller != nil {
		c.caller.Close()
	}
	if c.tutor != nil {
		c.tutor.Close() // un-registers, then closes
	}
	c.cancel()
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
