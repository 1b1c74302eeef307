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
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/sipconn"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
	"github.com/paysip/paysip/store"
)

func init() {
	register(command{"payee", "a priced SIP address: registers, joins the directory, answers paid calls", runPayee})
	register(command{"call", "call a priced SIP address and pay for it per second", runCall})
}

// PaymentLateReason is the Reason header (RFC 3326) of the payee's BYE
// when the caller fell behind the meter.
const PaymentLateReason = `SIP;cause=402;text="payment late"`

// sipFlags locate the SIP server and the account.
type sipFlags struct {
	server, user, password string
	loopback               bool
	tick                   time.Duration
	prepay                 int64
}

func (f *sipFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "sip-server", "127.0.0.1:5060", "the paysip SIP server (host:port, TCP)")
	fs.StringVar(&f.user, "sip-user", "", "SIP account name (default: the address's user; empty password: anonymous)")
	fs.StringVar(&f.password, "sip-password", "", "SIP account password (better PAYSIP_SIP_PASSWORD)")
	fs.BoolVar(&f.loopback, "loopback", true, "WebRTC on loopback addresses only (one-machine setups)")
	fs.DurationVar(&f.tick, "tick", time.Second, "length of a paid unit of call (tests shorten it)")
	fs.Int64Var(&f.prepay, "prepay", 1, "caller: units of call paid ahead (1: each second as it starts)")
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
	ua, err := newUA(*aor, sf)
	if err != nil {
		return err
	}
	defer ua.Close()
	rtc := rtcconn.Config{LoopbackOnly: sf.loopback}
	switch {
	case *echo:
		rtc.Audio = rtcconn.AudioEcho
	case *tone:
		rtc.Audio = rtcconn.AudioTone
	}
	ua.OnInvite(func(ic *sipua.IncomingCall) {
		from := ic.Request.From().Address.String()
		peer, answer, err := rtcconn.Answer(ctx, rtc, ic.Request.Body())
		if err != nil {
			log.Warn("call refused: bad SDP offer", "from", from, "err", err)
			ic.Reject(488, "Not Acceptable Here")
			return
		}
		call, err := ic.Answer(answer)
		if err != nil {
			peer.Close()
			return
		}
		go func() {
			defer peer.Close()
			var conn agent.Conn = sipconn.New(call)
			transport := "message"
			if rtcconn.OffersDataChannel(ic.Request.Body()) {
				c, err := peer.Conn(ctx)
				if err != nil {
					log.Warn("DataChannel did not open", "from", from, "err", err)
					call.Hangup(context.Background())
					return
				}
				conn, transport = c, "datachannel"
			}
			fmt.Printf("call from %s (%s)\n", from, transport)
			res, err := payee.Serve(ctx, conn, from)
			hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			reason := ""
			if errors.Is(err, agent.ErrPaymentLate) {
				reason = PaymentLateReason
			}
			call.HangupWithReason(hctx, reason)
			cancel()
			fmt.Printf("call from %s ended: paid %d sat, settlement %s (%v)\n", from, res.PaidSat, orNone(res.SettlementTxID), errOrOK(err))
		}()
	})
	if err := ua.KeepRegistered(ctx, 300, &sipua.Offer{PriceSatPerMin: *price, Name: *name}); err != nil {
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
	seconds := fs.Int64("seconds", 0, "hang up after this many seconds (0: at Ctrl-C)")
	budget := fs.Int64("budget", 0, "most the call may cost, sat (0: the pool)")
	capacity := fs.Int64("capacity", 1_000_000, "pool of a new channel, sat")
	maxPrice := fs.Int64("max-price", 0, "refuse a price above this, sat/min (required: 'paysip directory' shows prices)")
	from := fs.String("from", "", "the caller's address (default: anonymous@ the callee's domain)")
	transport := fs.String("transport", "datachannel", "where the payments go: datachannel or message")
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
	if *maxPrice <= 0 {
		return errors.New("paysip call: --max-price is required: the most you pay, sat/min ('paysip directory' shows prices)")
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
	payer := &agent.Payer{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: log, CapacitySat: *capacity, MaxPriceSatPerMin: *maxPrice}
	if err := payer.Recover(ctx); err != nil {
		log.Warn("recovery", "err", err)
	}
	if *from == "" {
		*from = "sip:anonymous@" + to.Host
	}
	ua, err := newUA(*from, sf)
	if err != nil {
		return err
	}
	defer ua.Close()
	peer, offer, err := rtcconn.NewOffer(ctx, rtcconn.Config{LoopbackOnly: sf.loopback, NoDataChannel: *transport == "message"})
	if err != nil {
		return err
	}
	defer peer.Close()
	call, err := ua.Call(ctx, to, offer, sip.NewHeader("Supported", sipserver.OptionTag))
	var st *sipua.ErrStatus
	if errors.As(err, &st) && st.Code == 402 {
		return fmt.Errorf("402 Payment Required: %v", st.Res.GetHeader(sipserver.TermsHeader))
	}
	if err != nil {
		return fmt.Errorf("calling %s: %w", to.String(), err)
	}
	defer func() {
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		call.Hangup(hctx)
		cancel()
	}()
	var conn agent.Conn = sipconn.New(call)
	if *transport != "message" {
		if err := peer.SetAnswer(call.RemoteSDP); err != nil {
			return err
		}
		if conn, err = peer.Conn(ctx); err != nil {
			return fmt.Errorf("DataChannel: %w", err)
		}
	}
	// Reuse an open channel with this payee; open one otherwise.
	var s *agent.PayerSession
	for _, rec := range openChannels(ctx, nd.store, to.String()) {
		if s, err = payer.Resume(ctx, conn, rec); err == nil {
			fmt.Printf("resuming channel %s (%d sat already paid)\n", rec, s.PaidSat())
			break
		}
		if !errors.Is(err, agent.ErrResumeRefused) {
			return err
		}
	}
	if s == nil {
		if s, err = payer.Open(ctx, conn, to.String()); err != nil {
			return err
		}
		fmt.Printf("channel %s open: %d sat in the pool\n", s.Channel().ID(), s.Channel().CapacitySat)
	}
	price := s.Terms().PriceSatPerMin
	mctx := ctx
	if *seconds > 0 {
		var cancel context.CancelFunc
		mctx, cancel = context.WithTimeout(ctx, time.Duration(*seconds)*sf.tick-sf.tick/2)
		defer cancel()
	}
	base := s.PaidSat()
	err = s.Meter(mctx, meter.Payer{PriceSatPerMin: price, Tick: sf.tick, Ahead: sf.prepay, BudgetSat: *budget}, func(t agent.Tick) {
		fmt.Fprintf(os.Stderr, "\r  %5.0f s  paid %8d sat  pool left %8d sat", t.Elapsed.Seconds()+1, t.PaidSat-base, t.PoolLeft)
		if t.LowBudget {
			fmt.Fprintf(os.Stderr, "  (low balance)")
		}
	})
	fmt.Fprintln(os.Stderr)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
	case errors.Is(err, meter.ErrBudget), errors.Is(err, meter.ErrPool):
		fmt.Printf("hanging up: %v\n", err)
	case err != nil:
		return err
	}
	paid := s.PaidSat() - base
	if *closeAtEnd {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		closed, err := s.Close(cctx, "hangup")
		if err != nil {
			return err
		}
		fmt.Printf("call paid %d sat; channel closed, settlement %s\n", paid, orNone(closed.SettlementTxID))
		return nil
	}
	fmt.Printf("call paid %d sat; channel %s stays open for the next call\n", paid, s.Channel().ID())
	return nil
}

// quietSIPGo sends sipgo's package-level bookkeeping logs (connection
// reference counts) to errors only.
func quietSIPGo() {
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}

func newUA(aor string, sf sipFlags) (*sipua.UA, error) {
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
	return sipua.New(sipua.Config{AOR: aor, Proxy: sf.server, Username: user, Password: pass})
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
	if err == nil || errors.Is(err, agent.ErrConnClosed) || strings.Contains(err.Error(), "closed") {
		return "ok"
	}
	return err.Error()
}
