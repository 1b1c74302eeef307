package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
	"github.com/pion/webrtc/v4"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "payee", short: "a priced SIP address: registers, joins the directory, answers paid calls",
			long: "Registers --aor with the SIP server, lists it in the directory at --price, answers calls and is paid per second; hangs up on a payer that falls behind (--grace) and settles when the call ends (or keeps the channel open for the caller's next call with --keep-open; always settled before its refund's lock time).",
			data: &payeeCmd{a: a}}
	}, func(a *app) commandSpec {
		return commandSpec{name: "call", short: "call a priced SIP address and pay for it per second",
			long: "Learns the price (the directory with --directory, or the server's 402 Paysip-Terms), which becomes the most this call pays unless --max-price says otherwise; opens a channel with a pool sized to the call (or resumes one), pays per second, and hangs up after --seconds, at --budget, when the pool ends, or on Ctrl-C.",
			data: &callCmd{a: a}}
	})
}

// sipFlags locate the SIP server and the account, and set up WebRTC.
type sipFlags struct {
	Server   string        `long:"sip-server" default:"127.0.0.1:5060" description:"the paysip SIP server (host:port, TCP)"`
	User     string        `long:"sip-user" description:"SIP account name (default: the address's user; no password: anonymous)"`
	Password string        `long:"sip-password" description:"SIP account password (better PAYSIP_SIP_PASSWORD)"`
	Loopback bool          `long:"loopback" description:"WebRTC on loopback addresses only (one-machine setups, tests); default: every interface"`
	STUN     string        `long:"stun" value-name:"URL" description:"STUN server for WebRTC behind a NAT, e.g. stun:stun.example.org:3478"`
	TURN     string        `long:"turn" value-name:"URL" description:"TURN relay when no direct path exists, e.g. turn:turn.example.org:3478"`
	TURNUser string        `long:"turn-user" description:"TURN user name"`
	TURNPass string        `long:"turn-pass" description:"TURN password (better PAYSIP_TURN_PASS)"`
	Tick     time.Duration `long:"tick" default:"1s" description:"length of a paid unit of call (tests shorten it)"`
	Prepay   int64         `long:"prepay" default:"1" description:"caller: units of call paid ahead (1: each second as it starts)"`
}

// rtc is the WebRTC configuration of the flags.
func (f *sipFlags) rtc() rtcconn.Config {
	c := rtcconn.Config{LoopbackOnly: f.Loopback}
	if f.STUN != "" {
		c.ICEServers = append(c.ICEServers, webrtc.ICEServer{URLs: []string{f.STUN}})
	}
	if f.TURN != "" {
		c.ICEServers = append(c.ICEServers, webrtc.ICEServer{URLs: []string{f.TURN}, Username: f.TURNUser, Credential: f.TURNPass})
	}
	return c
}

// payeeCmd is 'paysip payee'.
type payeeCmd struct {
	a        *app
	AOR      string        `long:"aor" required:"true" description:"the priced address, e.g. sip:tutor@paysip.local"`
	Price    int64         `long:"price" required:"true" description:"price in sat/min"`
	Name     string        `long:"name" description:"display name in the directory"`
	KeepOpen bool          `long:"keep-open" description:"keep a channel open when a call ends, for the caller's next call (settled before expiry anyway)"`
	Grace    time.Duration `long:"grace" default:"3s" description:"how late a payment may be before the payee hangs up"`
	Echo     bool          `long:"echo" description:"serve calls with an echo of the caller's audio"`
	Tone     bool          `long:"tone" description:"serve calls with a 440 Hz tone (G.711)"`
	Metrics  string        `long:"metrics" value-name:"ADDR" description:"serve Prometheus metrics at http://ADDR/metrics (host:port; port 0 picks one)"`
	Quiet    bool          `long:"quiet" description:"print no line per payment (many calls at once)"`
	Profile  string        `long:"cpu-profile" hidden:"true" description:"write a CPU profile to this file until the payee stops (paysip bench --profile)"`
}

// Execute runs the payee until Ctrl-C.
func (c *payeeCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	if c.Price <= 0 {
		return errors.New("--price must be positive")
	}
	nf, sf := &c.a.Node, &c.a.SIP
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := nf.logger()
	nd, err := nf.open(ctx, log)
	if err != nil {
		return err
	}
	defer nd.close()
	payee := &agent.Payee{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: log, PriceSatPerMin: c.Price,
		KeepOpen: c.KeepOpen, Poll: 200 * time.Millisecond, Metering: &meter.Payee{PriceSatPerMin: c.Price, Tick: sf.Tick, Grace: c.Grace}}
	if !c.Quiet {
		payee.OnPayment = func(id string, paid int64) {
			fmt.Fprintf(os.Stderr, "\r  channel %s…  earned %8d sat", id[:12], paid)
		}
	}
	if c.Profile != "" {
		stopProfile, err := startCPUProfile(c.Profile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	if c.Metrics != "" {
		addr, err := serveMetrics(ctx, c.Metrics, log)
		if err != nil {
			return err
		}
		fmt.Printf("metrics at http://%s/metrics\n", addr)
	}
	if err := payee.Recover(ctx); err != nil {
		log.Warn("recovery", "err", err)
	}
	go payee.WatchExpiries(ctx, 30*time.Second)
	ua, err := newUA(c.AOR, sf, log)
	if err != nil {
		return err
	}
	defer ua.Close()
	rtc := sf.rtc()
	switch {
	case c.Echo:
		rtc.Audio = rtcconn.AudioEcho
	case c.Tone:
		rtc.Audio = rtcconn.AudioTone
	}
	ua.OnInvite(func(ic *sipua.IncomingCall) {
		from := ic.Request.From().Address.String()
		err := paidcall.ServeCall(ctx, ic, rtc, payee, func(leg *paidcall.Leg) {
			fmt.Printf("call from %s (%s)\n", from, leg.Transport)
		}, func(_ *paidcall.Leg, res *agent.PayeeResult, err error) {
			if res == nil {
				res = &agent.PayeeResult{}
			}
			fmt.Printf("call from %s ended: paid %d sat, settlement %s (%v)\n", from, res.PaidSat, orNone(res.SettlementTxID), errOrOK(err))
		})
		if err != nil {
			log.Warn("call refused", "from", from, "err", err)
		}
	})
	if err := ua.KeepRegistered(ctx, 300, &sipext.Offer{PriceSatPerMin: c.Price, Name: c.Name}); err != nil {
		return fmt.Errorf("registering %s: %w", c.AOR, err)
	}
	fmt.Printf("payee %s ready at %d sat/min (Ctrl-C stops)\n", c.AOR, c.Price)
	<-ctx.Done()
	return nil
}

// callCmd is 'paysip call'.
type callCmd struct {
	a          *app
	Seconds    int64  `long:"seconds" description:"pay this many seconds of call, then hang up (0: at Ctrl-C)"`
	Budget     int64  `long:"budget" description:"most the call may cost, sat (0: the pool)"`
	Capacity   int64  `long:"capacity" description:"pool of a new channel, sat (0: sized to the call: --seconds or --budget, a margin for the next call, what the wallet can spend)"`
	MaxPool    int64  `long:"max-pool" description:"largest pool a payee may ask for, sat (0: --capacity, or the sized pool or 100,000 sat, whichever is larger)"`
	MaxPrice   int64  `long:"max-price" description:"refuse a price above this, sat/min (default: the price the directory or the server's 402 shows)"`
	Directory  string `long:"directory" value-name:"URL" description:"the server's HTTP address (http://HOST:8080) whose directory gives the price (default: the SIP server's 402)"`
	From       string `long:"from" description:"the caller's address (default: anonymous@ the callee's domain)"`
	Transport  string `long:"transport" default:"datachannel" choice:"datachannel" choice:"message" description:"where the payments go"`
	CloseAtEnd bool   `long:"close" description:"close the channel at the end of the call (the payee settles); default: keep it for the next call"`
	Args       struct {
		To string `positional-arg-name:"sip:NAME@DOMAIN"`
	} `positional-args:"yes" required:"yes"`
}

// Execute places the call.
func (c *callCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	nf, sf := &c.a.Node, &c.a.SIP
	var to sip.Uri
	if err := sip.ParseUri(c.Args.To, &to); err != nil {
		return fmt.Errorf("%q: %w", c.Args.To, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := nf.logger()
	nd, err := nf.open(ctx, log)
	if err != nil {
		return err
	}
	defer nd.close()
	payer := &agent.Payer{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: log}
	if err := payer.Recover(ctx); err != nil {
		log.Warn("recovery", "err", err)
	}
	if c.From == "" {
		c.From = "sip:anonymous@" + to.Host
	}
	ua, err := newUA(c.From, sf, log)
	if err != nil {
		return err
	}
	defer ua.Close()
	seen, where, err := priceSeen(ctx, ua, to, c.Directory)
	switch {
	case err != nil && c.MaxPrice > 0:
		log.Warn("could not learn the price before calling; the pool is sized at --max-price", "err", err)
		seen = c.MaxPrice
	case err != nil:
		return fmt.Errorf("%w (give --max-price to call anyway)", err)
	case c.MaxPrice > 0 && seen > c.MaxPrice:
		return fmt.Errorf("%s: price %d sat/min above the caller's limit %d (--max-price)", where, seen, c.MaxPrice)
	default:
		fmt.Printf("%s costs %d sat/min (%s)\n", to.String(), seen, where)
	}
	plan := paidcall.Plan{PriceSatPerMin: seen, MaxPriceSatPerMin: c.MaxPrice, Seconds: c.Seconds, BudgetSat: c.Budget, CapacitySat: c.Capacity, MaxCapacitySat: c.MaxPool,
		Tick: sf.Tick, Prepay: sf.Prepay, Close: c.CloseAtEnd}
	leg, err := paidcall.Dial(ctx, ua, to, sf.rtc(), c.Transport)
	if err != nil {
		return err
	}
	defer leg.Hangup(ctx, "")
	caller := &paidcall.Caller{Payer: payer, Log: log,
		Reusable: func(ctx context.Context, peer string) []string { return openChannels(ctx, nd.store, peer) },
		OnOpen: func(r *paidcall.Result) {
			if r.Resumed {
				fmt.Printf("resuming channel %s\n", r.ChannelID)
				return
			}
			fmt.Printf("pool of %d sat: %s\n", r.Pool.CapacitySat, r.Pool.Reason)
			fmt.Printf("channel %s open: %d sat in the pool\n", r.ChannelID, r.CapacitySat)
		},
		OnTick: func(t agent.Tick) {
			fmt.Fprintf(os.Stderr, "\r  %5.0f s  paid %8d sat  pool left %8d sat", t.Elapsed.Seconds()+1, t.PaidSat, t.PoolLeft)
			if t.LowBudget {
				fmt.Fprintf(os.Stderr, "  (low balance)")
			}
		}}
	res, err := caller.Pay(ctx, leg.Conn, to.String(), plan)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	if res.End == paidcall.EndBudget || res.End == paidcall.EndPool {
		fmt.Printf("hanging up: %s reached\n", res.End)
	}
	if res.Closed != nil {
		fmt.Printf("call paid %d sat; channel closed, settlement %s\n", res.PaidSat, orNone(res.Closed.SettlementTxID))
		return nil
	}
	fmt.Printf("call paid %d sat; channel %s stays open for the next call\n", res.PaidSat, res.ChannelID)
	return nil
}

// priceSeen is the price the caller agrees to before calling: the
// directory's listing of to (with --directory), or the Paysip-Terms of the
// 402 the server answers a call that does not say it can pay.
func priceSeen(ctx context.Context, ua *sipua.UA, to sip.Uri, directory string) (int64, string, error) {
	if directory != "" {
		entries, err := sipua.FetchDirectory(ctx, directory)
		if err != nil {
			return 0, "", err
		}
		for _, l := range entries {
			if l.AOR == to.String() {
				return l.PriceSatPerMin, "the directory", nil
			}
		}
		return 0, "", fmt.Errorf("%s is not in the directory of %s", to.String(), directory)
	}
	// An INVITE without "Supported: paysip" and without a body: a priced
	// address answers 402 with its terms before anyone rings.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	call, err := ua.Call(qctx, to, nil)
	if err == nil {
		call.Hangup(qctx)
		return 0, "", fmt.Errorf("%s answered a call that did not offer to pay: not a priced address", to.String())
	}
	var st *sipua.StatusError
	if !errors.As(err, &st) {
		return 0, "", fmt.Errorf("asking %s for its price: %w", to.String(), err)
	}
	terms, ok, terr := st.PaymentRequired()
	if !ok {
		return 0, "", fmt.Errorf("asking %s for its price: %w", to.String(), err)
	}
	if terr != nil {
		return 0, "", terr
	}
	return terms.PriceSatPerMin, "the server's 402 Paysip-Terms", nil
}

// quietSIPGo sends sipgo's package-level bookkeeping logs (connection
// reference counts) to errors only.
func quietSIPGo() {
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}

func newUA(aor string, sf *sipFlags, log *slog.Logger) (*sipua.UA, error) {
	quietSIPGo()
	var u sip.Uri
	if err := sip.ParseUri(aor, &u); err != nil {
		return nil, fmt.Errorf("%q: %w", aor, err)
	}
	user := sf.User
	pass := sf.Password
	if pass == "" {
		pass = os.Getenv("PAYSIP_SIP_PASSWORD")
	}
	if user == "" && pass != "" {
		user = u.User
	}
	return sipua.New(sipua.Config{AOR: aor, Proxy: sf.Server, Username: user, Password: pass, Log: log})
}

// openChannels lists the payer's open channels with peer that still have
// a tenth of their pool: a nearly spent one is left to be settled, and a
// new channel is opened instead.
func openChannels(ctx context.Context, db *store.DB, peer string) []string {
	recs, err := db.List(ctx, store.StateOpen)
	if err != nil {
		return nil
	}
	var ids []string
	for _, r := range recs {
		left := r.Channel.CapacitySat - r.SignedSat
		if r.Role == store.Payer && r.Peer == peer && left >= r.Channel.CapacitySat/10 {
			ids = append(ids, r.ID())
		}
	}
	return ids
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func errOrOK(err error) string {
	if paidcall.CleanEnd(err) {
		return "ok"
	}
	return err.Error()
}
