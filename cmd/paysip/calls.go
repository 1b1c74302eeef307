package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
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
	register(command{"payee", "a priced SIP address: registers, joins the directory, answers paid calls", runPayee})
	register(command{"call", "call a priced SIP address and pay for it per second", runCall})
}

// sipFlags locate the SIP server and the account, and set up WebRTC.
type sipFlags struct {
	server, user, password string
	loopback               bool
	stun, turn             string
	turnUser, turnPass     string
	tick                   time.Duration
	prepay                 int64
}

func (f *sipFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "sip-server", "127.0.0.1:5060", "the paysip SIP server (host:port, TCP)")
	fs.StringVar(&f.user, "sip-user", "", "SIP account name (default: the address's user; empty password: anonymous)")
	fs.StringVar(&f.password, "sip-password", "", "SIP account password (better PAYSIP_SIP_PASSWORD)")
	fs.BoolVar(&f.loopback, "loopback", false, "WebRTC on loopback addresses only (one-machine setups, tests)")
	fs.StringVar(&f.stun, "stun", "", "STUN server URL for WebRTC behind a NAT, e.g. stun:stun.example.org:3478")
	fs.StringVar(&f.turn, "turn", "", "TURN relay URL when no direct path exists, e.g. turn:turn.example.org:3478?transport=udp")
	fs.StringVar(&f.turnUser, "turn-user", "", "TURN user name")
	fs.StringVar(&f.turnPass, "turn-pass", "", "TURN password (better PAYSIP_TURN_PASS)")
	fs.DurationVar(&f.tick, "tick", time.Second, "length of a paid unit of call (tests shorten it)")
	fs.Int64Var(&f.prepay, "prepay", 1, "caller: units of call paid ahead (1: each second as it starts)")
}

// rtc is the WebRTC configuration of the flags.
func (f *sipFlags) rtc() rtcconn.Config {
	c := rtcconn.Config{LoopbackOnly: f.loopback}
	if f.stun != "" {
		c.ICEServers = append(c.ICEServers, webrtc.ICEServer{URLs: []string{f.stun}})
	}
	if f.turn != "" {
		c.ICEServers = append(c.ICEServers, webrtc.ICEServer{URLs: []string{f.turn}, Username: f.turnUser, Credential: f.turnPass})
	}
	return c
}

func runPayee(args []string) error {
	fs := flag.NewFlagSet("payee", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	var sf sipFlags
	sf.register(fs)
	aor := fs.String("aor", "", "the priced address, e.g. sip:tutor@paysip.local (required)")
	price := fs.Int64("price", 0, "price in sat/min (required)")
	name := fs.String("name", "", "display name in the directory")
	keepOpen := fs.Bool("keep-open", false, "keep a channel open when a call ends, for the caller's next call (settled before expiry anyway)")
	grace := fs.Duration("grace", 3*time.Second, "how late a payment may be before the payee hangs up")
	echo := fs.Bool("echo", false, "serve calls with an echo of the caller's audio")
	tone := fs.Bool("tone", false, "serve calls with a 440 Hz tone (G.711)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *aor == "" || *price <= 0 {
		fs.Usage()
		return errors.New("--aor and --price are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := nf.logger()
	nd, err := nf.open(ctx, log)
	if err != nil {
		return err
	}
	defer nd.close()
	payee := &agent.Payee{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: log, PriceSatPerMin: *price,
		KeepOpen: *keepOpen, Poll: 200 * time.Millisecond, Metering: &meter.Payee{PriceSatPerMin: *price, Tick: sf.tick, Grace: *grace}}
	payee.OnPayment = func(id string, paid int64) {
		fmt.Fprintf(os.Stderr, "\r  channel %s…  earned %8d sat", id[:12], paid)
	}
	if err := payee.Recover(ctx); err != nil {
		log.Warn("recovery", "err", err)
	}
	go payee.WatchExpiries(ctx, 30*time.Second)
	ua, err := newUA(*aor, sf, log)
	if err != nil {
		return err
	}
	defer ua.Close()
	rtc := sf.rtc()
	switch {
	case *echo:
		rtc.Audio = rtcconn.AudioEcho
	case *tone:
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
	if err := ua.KeepRegistered(ctx, 300, &sipext.Offer{PriceSatPerMin: *price, Name: *name}); err != nil {
		return fmt.Errorf("registering %s: %w", *aor, err)
	}
	fmt.Printf("payee %s ready at %d sat/min (Ctrl-C stops)\n", *aor, *price)
	<-ctx.Done()
	return nil
}

func runCall(args []string) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	var sf sipFlags
	sf.register(fs)
	seconds := fs.Int64("seconds", 0, "pay this many seconds of call, then hang up (0: at Ctrl-C)")
	budget := fs.Int64("budget", 0, "most the call may cost, sat (0: the pool)")
	capacity := fs.Int64("capacity", 0, "pool of a new channel, sat (0: sized to the call: --seconds or --budget, a margin for the next call, what the wallet can spend)")
	maxPrice := fs.Int64("max-price", 0, "refuse a price above this, sat/min (default: the price the directory or the server's 402 shows)")
	server := fs.String("directory", "", "the server's HTTP address (http://HOST:8080) whose directory gives the price (default: ask the SIP server with a 402)")
	from := fs.String("from", "", "the caller's address (default: anonymous@ the callee's domain)")
	transport := fs.String("transport", sipext.TransportDataChannel, "where the payments go: datachannel or message")
	closeAtEnd := fs.Bool("close", false, "close the channel at the end of the call (the payee settles); default: keep it for the next call")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = append(args[1:], args[0]) // the address may come before the flags
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: paysip call [flags] sip:NAME@DOMAIN")
	}
	var to sip.Uri
	if err := sip.ParseUri(fs.Arg(0), &to); err != nil {
		return fmt.Errorf("%q: %w", fs.Arg(0), err)
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
	if *from == "" {
		*from = "sip:anonymous@" + to.Host
	}
	ua, err := newUA(*from, sf, log)
	if err != nil {
		return err
	}
	defer ua.Close()
	seen, where, err := priceSeen(ctx, ua, to, *server)
	switch {
	case err != nil && *maxPrice > 0:
		log.Warn("could not learn the price before calling; the pool is sized at --max-price", "err", err)
		seen = *maxPrice
	case err != nil:
		return fmt.Errorf("%w (give --max-price to call anyway)", err)
	case *maxPrice > 0 && seen > *maxPrice:
		return fmt.Errorf("%s: price %d sat/min above the caller's limit %d (--max-price)", where, seen, *maxPrice)
	default:
		fmt.Printf("%s costs %d sat/min (%s)\n", to.String(), seen, where)
	}
	plan := paidcall.Plan{PriceSatPerMin: seen, MaxPriceSatPerMin: *maxPrice, Seconds: *seconds, BudgetSat: *budget, CapacitySat: *capacity,
		Tick: sf.tick, Prepay: sf.prepay, Close: *closeAtEnd}
	leg, err := paidcall.Dial(ctx, ua, to, sf.rtc(), *transport)
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

func newUA(aor string, sf sipFlags, log *slog.Logger) (*sipua.UA, error) {
	quietSIPGo()
	var u sip.Uri
	if err := sip.ParseUri(aor, &u); err != nil {
		return nil, fmt.Errorf("%q: %w", aor, err)
	}
	user := sf.user
	pass := sf.password
	if pass == "" {
		pass = os.Getenv("PAYSIP_SIP_PASSWORD")
	}
	if user == "" && pass != "" {
		user = u.User
	}
	return sipua.New(sipua.Config{AOR: aor, Proxy: sf.server, Username: user, Password: pass, Log: log})
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
