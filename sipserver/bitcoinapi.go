package sipserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sipreg"
	"github.com/paysip/paysip/txbuild"
)

// WatchEvent is the SUBSCRIBE event package of script watches.
const WatchEvent = "paysip-watch"

// bitcoinAPI is the server-side user agent at sip:bitcoin@DOMAIN: the
// original write-up's bridge through which browsers, phones and other
// networks reach the Bitcoin network with nothing but SIP.
type bitcoinAPI struct {
	s        *Server
	limit    *sourceLimiter  // requests per source address
	accounts *accountLimiter // requests per account
	mu       sync.Mutex
	watches  map[string]*watch
	perUser  map[string]int // watches per user
	poll     time.Duration

	// The regtest faucet (EnableFaucet): nil answers no_faucet.
	faucet atomic.Pointer[faucetConf]
}

// faucetConf is an enabled faucet and its limits.
type faucetConf struct {
	pay      Faucet
	max      int64
	sources  *sourceLimiter  // faucet payments per source address
	accounts *accountLimiter // faucet payments per account
	all      *accountLimiter // faucet payments in all (one bucket)
}

// watch is a script watched for a user: notified by MESSAGE to the user's
// address, or by NOTIFY in its SUBSCRIBE dialog.
type watch struct {
	user    string
	script  []byte
	expires time.Time
	state   string
	// dialog, for SUBSCRIBE watches
	dialog *subDialog
}

type subDialog struct {
	callID, localTag, remoteTag string
	local, remote               sip.Uri // our address, the subscriber's
	target                      sip.Uri // subscriber's Contact: the NOTIFY's Request-URI
	// The flow the SUBSCRIBE came on: NOTIFYs go back along it, never to
	// an address the Contact names (a victim's), RFC 6665 section 4.1.2.4
	// and RFC 5626 section 5.
	source, transport string
	cseq              uint32
}

func newBitcoinAPI(s *Server) *bitcoinAPI {
	rate := s.cfg.APIRate
	return &bitcoinAPI{s: s, limit: newSourceLimiter(rate, 2*rate, s.lim.MaxSources),
		accounts: newAccountLimiter(rate, 2*rate, s.lim.MaxSources),
		watches:  map[string]*watch{}, perUser: map[string]int{}, poll: time.Second}
}

// Faucet pays regtest coins from the server's own wallet (paysip serve
// --faucet: the embedded regtest node's faucet wallet, confirmed by a
// mined block). It returns the txid.
type Faucet interface {
	Pay(ctx context.Context, script []byte, amountSat int64) (txid string, err error)
}

// Faucet limits: one payment every FaucetInterval per source address and
// per account (burst FaucetBurst), one a second in all.
const (
	FaucetInterval = 20 * time.Second
	FaucetBurst    = 3
	// DefaultFaucetMaxSat is the most one faucet request gets (0.1 BTC).
	DefaultFaucetMaxSat = 10_000_000
)

// ErrFaucetNotRegtest: a faucet is only for regtest coins.
var ErrFaucetNotRegtest = errors.New("sipserver: the faucet is for regtest only")

// EnableFaucet makes the SIP API answer faucet requests from f, each at
// most maxSat (DefaultFaucetMaxSat when 0), within the faucet limits. It
// refuses unless the server's chain is regtest. It may be called before
// or after Run.
func (s *Server) EnableFaucet(f Faucet, maxSat int64) error {
	if s.cfg.Chain == nil || !chain.IsRegtest(s.cfg.Chain.Params()) {
		return ErrFaucetNotRegtest
	}
	if maxSat <= 0 {
		maxSat = DefaultFaucetMaxSat
	}
	per := 1 / FaucetInterval.Seconds()
	s.api.faucet.Store(&faucetConf{pay: f, max: maxSat,
		sources:  newSourceLimiter(per, FaucetBurst, s.lim.MaxSources),
		accounts: newAccountLimiter(per, FaucetBurst, s.lim.MaxSources),
		all:      newAccountLimiter(1, FaucetBurst, 1)})
	return nil
}

// allow takes cost tokens of the source address's bucket (rate, burst
// twice that) and, for an account, of the account's: nobody can spend
// another's allowance, and an account cannot multiply its own by using
// many addresses.
func (a *bitcoinAPI) allow(src, account string, cost float64, now time.Time) (bool, time.Duration) {
	ip := sourceIP(src)
	if a.s.lim.exempt(ip) {
		return true, 0
	}
	if ok, wait := a.limit.take(ip, cost, now); !ok {
		return false, wait
	}
	if account != "" {
		return a.accounts.take(account, cost, now)
	}
	return true, 0
}

// cost is what a request takes from its buckets: one, and one more per
// 20 scripts asked (each script is a lookup on the node).
func cost(r *chainapi.Request) float64 { return 1 + float64(len(r.Scripts)/20) }

// anonymousFrom: a From at anonymous.invalid is a caller without an
// account (RFC 3323 section 4.1.1.3; SIP.js's anonymous user agents use
// it). It is not challenged; its allowance is its source address's.
func anonymousFrom(req *sip.Request) bool {
	f := req.From()
	return f != nil && strings.EqualFold(f.Address.Host, "anonymous.invalid")
}

func (a *bitcoinAPI) reply(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body *chainapi.Response, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, chainapi.Encode(body))
	res.AppendHeader(sip.NewHeader("Content-Type", paywire.ContentType))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	tx.Respond(res)
}

// refusal is a refused request: its SIP status, reason, API code, and a
// Retry-After in seconds when it is worth retrying.
type refusal struct {
	status     int
	reason     string
	code       string
	retryAfter int
}

func refuse(status int, code, format string, args ...any) *refusal {
	return &refusal{status: status, code: code, reason: fmt.Sprintf(format, args...)}
}

func (a *bitcoinAPI) fail(tx sip.ServerTransaction, req *sip.Request, f *refusal, id string) {
	a.s.log.Warn("bitcoin API refused a request", "code", f.status, "api_code", f.code, "reason", f.reason, "from", req.Source())
	var hdrs []sip.Header
	if f.retryAfter > 0 {
		hdrs = append(hdrs, sip.NewHeader("Retry-After", strconv.Itoa(f.retryAfter)))
	}
	a.reply(tx, req, f.status, f.reason, &chainapi.Response{Type: chainapi.TypeError, ID: id, Code: f.code, Reason: f.reason}, hdrs...)
}

// handle serves MESSAGE and SUBSCRIBE requests to the API: who asks (an
// account, or anonymous by source address), within which limits, then
// the answer.
func (a *bitcoinAPI) handle(req *sip.Request, tx sip.ServerTransaction) {
	s := a.s
	if req.Method != sip.MESSAGE && req.Method != sip.SUBSCRIBE {
		s.respond(tx, req, 405, "Method Not Allowed", sip.NewHeader("Allow", "MESSAGE, SUBSCRIBE"))
		return
	}
	user, account := "anonymous@"+sourceIP(req.Source()).String(), ""
	if !s.cfg.Open && !anonymousFrom(req) {
		if account = s.authenticate(req, tx, false); account == "" {
			return
		}
		user = account
	}
	if ct := req.ContentType(); ct == nil || !strings.HasPrefix(strings.ToLower(ct.Value()), paywire.ContentType) {
		s.respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", paywire.ContentType))
		return
	}
	if ok, wait := a.allow(req.Source(), account, 1, s.now()); !ok {
		a.rateLimited(tx, req, wait)
		return
	}
	r, err := chainapi.Decode(req.Body())
	if err != nil {
		a.fail(tx, req, refuse(400, "bad_request", "%v", err), "")
		return
	}
	if extra := cost(r) - 1; extra > 0 {
		if ok, wait := a.allow(req.Source(), account, extra, s.now()); !ok {
			a.rateLimited(tx, req, wait)
			return
		}
	}
	if req.Method == sip.SUBSCRIBE && req.Transport() == "UDP" && !s.udp.proved(req.Source()) {
		// A UDP source may be spoofed: NOTIFYs to it would make us a
		// reflector. A source proves its address by authenticating with
		// a nonce sent to it (udpguard.go).
		s.respond(tx, req, 403, "Forbidden: subscribe over TCP, TLS or WebSocket, or authenticate from this address")
		return
	}
	if s.cfg.Chain == nil {
		a.fail(tx, req, refuse(503, "unavailable", "no Bitcoin node configured"), r.ID)
		return
	}
	if req.Method == sip.SUBSCRIBE && r.Type != chainapi.TypeWatch && r.Type != chainapi.TypeUnwatch {
		a.fail(tx, req, refuse(489, "bad_event", "SUBSCRIBE carries watch or unwatch"), r.ID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, f := a.answer(ctx, r, user, account, req)
	if f != nil {
		a.fail(tx, req, f, r.ID)
		return
	}
	if req.Method == sip.SUBSCRIBE {
		a.acceptSubscribe(tx, req, resp)
		return
	}
	a.reply(tx, req, 200, "OK", resp)
}

// rateLimited answers 503 with Retry-After (RFC 3261 section 21.5.4),
// and a body with code rate_limit so that a client reading only bodies
// (the page's chainRequest) can tell it from an unreachable node.
func (a *bitcoinAPI) rateLimited(tx sip.ServerTransaction, req *sip.Request, wait time.Duration) {
	secs := strconv.Itoa(int(math.Ceil(max(1, wait.Seconds()))))
	a.reply(tx, req, 503, "Service Unavailable: rate limit", &chainapi.Response{Type: chainapi.TypeError, Code: "rate_limit",
		Reason: "rate limit: retry after " + secs + " s"}, sip.NewHeader("Retry-After", secs))
}

// nodeError is the refusal for a failing node: logged at error (the
// operator's node, not the asker, is at fault), answered 503.
func (a *bitcoinAPI) nodeError(err error) *refusal {
	a.s.log.Error("bitcoin API: node error", "err", err)
	return &refusal{status: 503, code: "unavailable", reason: "node error", retryAfter: 5}
}

// answer asks the node what r asks.
func (a *bitcoinAPI) answer(ctx context.Context, r *chainapi.Request, user, account string, req *sip.Request) (*chainapi.Response, *refusal) {
	c := a.s.cfg.Chain
	resp := &chainapi.Response{Type: r.Type, ID: r.ID}
	var err error
	switch r.Type {
	case chainapi.TypeTip:
		resp.Height, err = c.TipHeight(ctx)
	case chainapi.TypeFee:
		target := r.Target
		if target == 0 {
			target = 6
		}
		var fr txbuild.FeeRate
		fr, err = c.FeeRate(ctx, target)
		resp.FeeRate = int64(fr)
	case chainapi.TypeCoins, chainapi.TypeUsed:
		return a.scripts(ctx, r, resp)
	case chainapi.TypeWatch, chainapi.TypeUnwatch, chainapi.TypeFaucet:
		script, serr := a.script(r)
		if serr != nil {
			return nil, refuse(400, "bad_request", "%v", serr)
		}
		resp.Script = hex.EncodeToString(script)
		switch r.Type {
		case chainapi.TypeWatch:
			if account == "" && !a.s.cfg.Open && req.Method != sip.SUBSCRIBE {
				// Notified by MESSAGE to the account's contacts: an
				// anonymous caller has none.
				return nil, refuse(403, "limit", "without an account, watch by SUBSCRIBE")
			}
			if resp.Expires, err = a.addWatch(user, script, r.Expires, req); err != nil {
				f := refuse(403, "limit", "%v", err)
				if errors.Is(err, errTooManyWatches) {
					f.status, f.retryAfter = 503, 60
				}
				return nil, f
			}
		case chainapi.TypeUnwatch:
			a.removeWatch(user, script)
		case chainapi.TypeFaucet:
			return a.pay(ctx, r, script, account, req, resp)
		}
	case chainapi.TypeBroadcast:
		return a.broadcast(ctx, r, resp)
	case chainapi.TypeTxStatus, chainapi.TypeTx:
		h, _ := chainhash.NewHashFromStr(r.TxID)
		resp.TxID = r.TxID
		if r.Type == chainapi.TypeTx {
			return a.tx(ctx, *h, resp)
		}
		var st chain.TxStatus
		if st, err = c.TxStatus(ctx, *h); err == nil {
			resp.Known, resp.Confirmations = &st.Known, &st.Confirmations
		}
	case chainapi.TypeSpendOf:
		return a.spendOf(ctx, r, resp)
	default:
		return nil, refuse(400, "bad_request", "unknown type %q", r.Type)
	}
	if err != nil {
		return nil, a.nodeError(err)
	}
	return resp, nil
}

// scripts answers coins and used: one script (address or script, coins
// only) or up to chainapi.MaxScripts of them.
func (a *bitcoinAPI) scripts(ctx context.Context, r *chainapi.Request, resp *chainapi.Response) (*chainapi.Response, *refusal) {
	var scripts [][]byte
	if len(r.Scripts) > 0 {
		for i, h := range r.Scripts {
			b, _ := hex.DecodeString(h) // Decode checked the hex
			if err := a.addressable(b); err != nil {
				return nil, refuse(400, "bad_request", "scripts[%d]: %v", i, err)
			}
			scripts = append(scripts, b)
		}
	} else {
		script, err := a.script(r)
		if err != nil {
			return nil, refuse(400, "bad_request", "%v", err)
		}
		resp.Script = hex.EncodeToString(script)
		scripts = [][]byte{script}
	}
	c := a.s.cfg.Chain
	if r.Type == chainapi.TypeUsed {
		used, err := c.Used(ctx, scripts)
		if err != nil {
			return nil, a.nodeError(err)
		}
		resp.Used = used
		return resp, nil
	}
	coins, err := c.Coins(ctx, scripts)
	if err != nil {
		return nil, a.nodeError(err)
	}
	if len(coins) > chainapi.MaxCoins {
		return nil, refuse(413, "too_many", "%d coins; at most %d an answer: ask fewer scripts", len(coins), chainapi.MaxCoins)
	}
	resp.Coins = apiCoins(coins, len(r.Scripts) > 0)
	return resp, nil
}

// broadcast sends a transaction; a node that already has it is success.
func (a *bitcoinAPI) broadcast(ctx context.Context, r *chainapi.Request, resp *chainapi.Response) (*chainapi.Response, *refusal) {
	raw, _ := hex.DecodeString(r.Tx)
	t, err := channel.DecodeTx(raw)
	if err != nil {
		return nil, refuse(400, "bad_request", "transaction: %v", err)
	}
	resp.TxID = t.TxHash().String()
	if err = a.s.cfg.Chain.Broadcast(ctx, t); err == nil || errors.Is(err, chain.ErrAlreadyKnown) {
		return resp, nil
	}
	code := "rejected"
	switch {
	case errors.Is(err, chain.ErrNonFinal):
		code = "non_final"
	case errors.Is(err, chain.ErrConflict):
		code = "conflict"
	case !errors.Is(err, chain.ErrRejected):
		return nil, a.nodeError(err)
	}
	return nil, refuse(488, code, "%v", err)
}

// txSource is a chain backend that reads transactions back
// (chain/btcdrpc does).
type txSource interface {
	Tx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error)
}

// tx answers a transaction the node has.
func (a *bitcoinAPI) tx(ctx context.Context, h chainhash.Hash, resp *chainapi.Response) (*chainapi.Response, *refusal) {
	src, ok := a.s.cfg.Chain.(txSource)
	if !ok {
		return nil, refuse(501, "unsupported", "this server's node backend cannot read transactions back")
	}
	st, err := a.s.cfg.Chain.TxStatus(ctx, h)
	if err != nil {
		return nil, a.nodeError(err)
	}
	if !st.Known {
		return nil, refuse(404, "not_found", "transaction %s unknown to the node", h)
	}
	t, err := src.Tx(ctx, h)
	if err != nil {
		return nil, a.nodeError(err)
	}
	var b bytes.Buffer
	t.Serialize(&b)
	resp.Tx = hex.EncodeToString(b.Bytes())
	return resp, nil
}

// spendOf answers the transaction spending an outpoint, if any.
func (a *bitcoinAPI) spendOf(ctx context.Context, r *chainapi.Request, resp *chainapi.Response) (*chainapi.Response, *refusal) {
	op, err := wire.NewOutPointFromString(r.Outpoint)
	if err != nil {
		return nil, refuse(400, "bad_request", "outpoint: %v", err)
	}
	script, _ := hex.DecodeString(r.Script)
	if err := a.addressable(script); err != nil {
		return nil, refuse(400, "bad_request", "%v", err)
	}
	sp, err := a.s.cfg.Chain.SpendOf(ctx, *op, script)
	if err != nil {
		return nil, a.nodeError(err)
	}
	if sp != nil {
		resp.Spend = &chainapi.Spend{TxID: sp.TxID.String(), Confirmations: sp.Confirmations}
		if sp.Tx != nil {
			var b bytes.Buffer
			sp.Tx.Serialize(&b)
			resp.Spend.Tx = hex.EncodeToString(b.Bytes())
		}
	}
	return resp, nil
}

// pay answers a faucet request: regtest only, a faucet configured, the
// amount within the cap, and the faucet's own limits per source address,
// per account and in all.
func (a *bitcoinAPI) pay(ctx context.Context, r *chainapi.Request, script []byte, account string, req *sip.Request, resp *chainapi.Response) (*chainapi.Response, *refusal) {
	fc := a.faucet.Load()
	if fc == nil || !chain.IsRegtest(a.s.cfg.Chain.Params()) {
		return nil, refuse(403, "no_faucet", "this server has no faucet (regtest only)")
	}
	if req.Transport() == "UDP" && !a.s.udp.proved(req.Source()) {
		// A UDP source may be spoofed: the per-source limit would not
		// hold (udpguard.go).
		return nil, refuse(403, "limit", "faucet: ask over TCP, TLS or WebSocket, or authenticate from this address")
	}
	if r.AmountSat > fc.max {
		return nil, refuse(403, "limit", "the faucet pays at most %d sat a request", fc.max)
	}
	now := a.s.now()
	ip := sourceIP(req.Source())
	for _, take := range []func() (bool, time.Duration){
		func() (bool, time.Duration) { return fc.all.take("", 1, now) },
		func() (bool, time.Duration) { return fc.sources.take(ip, 1, now) },
		func() (bool, time.Duration) {
			if account == "" {
				return true, 0
			}
			return fc.accounts.take(account, 1, now)
		},
	} {
		if ok, wait := take(); !ok {
			f := refuse(503, "rate_limit", "faucet: try again later")
			f.retryAfter = int(math.Ceil(max(1, wait.Seconds())))
			return nil, f
		}
	}
	txid, err := fc.pay.Pay(ctx, script, r.AmountSat)
	if err != nil {
		return nil, a.nodeError(err)
	}
	a.s.log.Info("faucet paid", "amount_sat", r.AmountSat, "txid", txid, "from", req.Source(), "account", account)
	resp.TxID = txid
	return resp, nil
}

// script is the request's one script (or its address's), checked.
func (a *bitcoinAPI) script(r *chainapi.Request) ([]byte, error) {
	if r.Script != "" {
		b, _ := hex.DecodeString(r.Script) // Decode checked the hex
		return b, a.addressable(b)
	}
	addr, err := btcutil.DecodeAddress(r.Address, a.s.cfg.Chain.Params())
	if err != nil || !addr.IsForNet(a.s.cfg.Chain.Params()) {
		return nil, fmt.Errorf("address %q is not for %s", r.Address, a.s.cfg.Chain.Params().Name)
	}
	return txscript.PayToAddrScript(addr)
}

// addressable refuses a script that pays no single address: the node's
// address index answers for addresses only, and one such script among a
// poll's would fail the whole poll (every user's watches).
func (a *bitcoinAPI) addressable(script []byte) error {
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(script, a.s.cfg.Chain.Params())
	if err != nil || len(addrs) != 1 {
		return fmt.Errorf("script %x pays no single address", script)
	}
	return nil
}

// apiCoins renders coins, each with its script when several were asked.
func apiCoins(us []chain.Utxo, withScript bool) []chainapi.Coin {
	out := make([]chainapi.Coin, 0, len(us))
	for _, u := range us {
		c := chainapi.Coin{TxID: u.Outpoint.Hash.String(), Vout: u.Outpoint.Index, ValueSat: u.Value, Confirmations: u.Confirmations, Coinbase: u.Coinbase}
		if withScript {
			c.Script = hex.EncodeToString(u.PkScript)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TxID+fmt.Sprint(out[i].Vout) < out[j].TxID+fmt.Sprint(out[j].Vout) })
	return out
}

func watchKey(user string, script []byte) string { return user + "|" + hex.EncodeToString(script) }

// errTooManyWatches: the server holds as many watches as it allows.
var errTooManyWatches = errors.New("too many watches on this server")

// errTooManyUserWatches: the user holds as many watches as allowed.
var errTooManyUserWatches = errors.New("too many watches for this user")

// addWatch adds or renews a watch, within the per-user and total caps; a
// watch lives at most MaxWatchExpires seconds (RFC 6665 section 4.2.1.1:
// the notifier may shorten the duration). It returns the seconds granted.
func (a *bitcoinAPI) addWatch(user string, script []byte, secs int, req *sip.Request) (int, error) {
	if secs <= 0 {
		secs = 600
	}
	secs = min(secs, a.s.lim.MaxWatchExpires)
	w := &watch{user: user, script: script, expires: a.s.now().Add(time.Duration(secs) * time.Second)}
	if req.Method == sip.SUBSCRIBE {
		tag := make([]byte, 8)
		rand.Read(tag)
		d := &subDialog{callID: req.CallID().Value(), localTag: hex.EncodeToString(tag), local: req.To().Address, remote: req.From().Address}
		d.remoteTag, _ = req.From().Params.Get("tag")
		if c := req.Contact(); c != nil {
			d.target = c.Address
		} else {
			d.target = req.From().Address
		}
		d.source, d.transport = req.Source(), req.Transport()
		w.dialog = d
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := watchKey(user, script)
	if _, renew := a.watches[key]; !renew {
		if a.perUser[user] >= a.s.lim.MaxWatchesPerUser {
			return 0, errTooManyUserWatches
		}
		if len(a.watches) >= a.s.lim.MaxWatches {
			return 0, errTooManyWatches
		}
		a.perUser[user]++
	}
	a.watches[key] = w
	return secs, nil
}

func (a *bitcoinAPI) removeWatch(user string, script []byte) {
	a.mu.Lock()
	a.deleteLocked(watchKey(user, script))
	a.mu.Unlock()
}

func (a *bitcoinAPI) deleteLocked(key string) {
	w, ok := a.watches[key]
	if !ok {
		return
	}
	delete(a.watches, key)
	if a.perUser[w.user]--; a.perUser[w.user] <= 0 {
		delete(a.perUser, w.user)
	}
}

// acceptSubscribe answers a SUBSCRIBE (RFC 6665) and sends the first
// NOTIFY with the script's current coins.
func (a *bitcoinAPI) acceptSubscribe(tx sip.ServerTransaction, req *sip.Request, resp *chainapi.Response) {
	a.mu.Lock()
	script, _ := hex.DecodeString(resp.Script)
	var w *watch
	for _, x := range a.watches {
		if x.dialog != nil && x.dialog.callID == req.CallID().Value() && hex.EncodeToString(x.script) == resp.Script {
			w = x
		}
	}
	a.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", chainapi.Encode(resp))
	res.AppendHeader(sip.NewHeader("Content-Type", paywire.ContentType))
	res.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(resp.Expires)))
	if w != nil {
		res.To().Params.Add("tag", w.dialog.localTag)
	}
	res.AppendHeader(&sip.ContactHeader{Address: sipURI(BitcoinUser, a.s.host, a.s.sipPort)})
	tx.Respond(res)
	if w != nil {
		go a.check(w, script, true)
	}
}

func sipURI(user, host string, port ...int) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: user, Host: host}
	if len(port) > 0 {
		u.Port = port[0]
	}
	return u
}

// watchChecksPerPoll is how many watched scripts one poll asks the node
// about.
const watchChecksPerPoll = 100

// watchLoop polls the watched scripts and notifies changes.
func (a *bitcoinAPI) watchLoop(ctx context.Context) {
	cursor := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.poll):
		}
		if a.s.cfg.Chain == nil {
			continue
		}
		a.mu.Lock()
		now := a.s.now()
		keys := make([]string, 0, len(a.watches))
		for k, w := range a.watches {
			if now.After(w.expires) {
				a.deleteLocked(k)
				continue
			}
			keys = append(keys, k)
		}
		// At most watchChecksPerPoll scripts a poll, in turn: the node's
		// load is bounded however many watches there are (a notification
		// is later when there are many).
		sort.Strings(keys)
		var ws []*watch
		for i := 0; i < min(len(keys), watchChecksPerPoll); i++ {
			ws = append(ws, a.watches[keys[(cursor+i)%len(keys)]])
		}
		cursor += len(ws)
		a.mu.Unlock()
		a.checkAll(ws)
	}
}

// checkAll asks the node once for the coins of every watched script (one
// request per poll, however many watches) and notifies the changes.
func (a *bitcoinAPI) checkAll(ws []*watch) {
	if len(ws) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := map[string]bool{}
	var scripts [][]byte
	for _, w := range ws {
		if k := string(w.script); !seen[k] {
			seen[k] = true
			scripts = append(scripts, w.script)
		}
	}
	all, err := a.s.cfg.Chain.Coins(ctx, scripts)
	if err != nil {
		return
	}
	byScript := map[string][]chain.Utxo{}
	for _, u := range all {
		byScript[string(u.PkScript)] = append(byScript[string(u.PkScript)], u)
	}
	for _, w := range ws {
		a.notifyCoins(ctx, w, w.script, byScript[string(w.script)], false)
	}
}

// check compares a watch's coins with what was last sent, and notifies.
func (a *bitcoinAPI) check(w *watch, script []byte, force bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	coins, err := a.s.cfg.Chain.Coins(ctx, [][]byte{script})
	if err != nil {
		return
	}
	a.notifyCoins(ctx, w, script, coins, force)
}

// notifyCoins notifies a watch's coins if they changed (or if forced).
func (a *bitcoinAPI) notifyCoins(ctx context.Context, w *watch, script []byte, coins []chain.Utxo, force bool) {
	resp := &chainapi.Response{Type: chainapi.TypeNotify, Script: hex.EncodeToString(script), Coins: apiCoins(coins, false)}
	body := chainapi.Encode(resp)
	a.mu.Lock()
	changed := string(body) != w.state
	w.state = string(body)
	a.mu.Unlock()
	if !changed && !force {
		return
	}
	if w.dialog != nil {
		a.notify(ctx, w, body)
		return
	}
	a.message(ctx, w.user, body)
}

// notify sends a NOTIFY in the watch's SUBSCRIBE dialog.
func (a *bitcoinAPI) notify(ctx context.Context, w *watch, body []byte) {
	d := w.dialog
	a.mu.Lock()
	d.cseq++
	seq := d.cseq
	a.mu.Unlock()
	req := sip.NewRequest(sip.NOTIFY, d.target)
	from := &sip.FromHeader{Address: d.local, Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{Address: d.remote, Params: sip.NewParams()}
	to.Params.Add("tag", d.remoteTag)
	req.AppendHeader(from)
	req.AppendHeader(to)
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.NOTIFY})
	req.AppendHeader(sip.NewHeader("Event", WatchEvent))
	req.AppendHeader(sip.NewHeader("Subscription-State", fmt.Sprintf("active;expires=%d", int(time.Until(w.expires).Seconds()))))
	req.AppendHeader(sip.NewHeader("Content-Type", paywire.ContentType))
	req.AppendHeader(&sip.ContactHeader{Address: sipURI(BitcoinUser, a.s.host, a.s.sipPort)})
	req.SetBody(body)
	req.SetTransport(d.transport)
	req.SetDestination(d.source)
	a.s.fromSIPPort(req)
	if _, err := a.s.client.Do(ctx, req); err != nil {
		a.s.log.Debug("NOTIFY not delivered", "to", d.source, "err", err)
	}
}

// message sends a notification as a MESSAGE to a user's registered
// contacts.
func (a *bitcoinAPI) message(ctx context.Context, user string, body []byte) {
	for _, b := range a.s.reg.Lookup(sipreg.AOR(sipURI(user, a.s.cfg.Domain)), a.s.now()) {
		req := sip.NewRequest(sip.MESSAGE, b.Contact.Address)
		from := &sip.FromHeader{Address: sipURI(BitcoinUser, a.s.cfg.Domain), Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(10))
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: sipURI(user, a.s.cfg.Domain)})
		req.AppendHeader(sip.NewHeader("Content-Type", paywire.ContentType))
		req.SetBody(body)
		// Along this very binding (its flow or Path), never a lookup of
		// its contact URI among every address: another account may have
		// registered a copy of it.
		t := bindingTarget(b)
		req.SetTransport(t.transport)
		req.SetDestination(t.dest)
		a.s.fromSIPPort(req)
		if _, err := a.s.client.Do(ctx, req); err != nil {
			a.s.log.Debug("notification not delivered", "to", b.Contact.Address.String(), "err", err)
		}
	}
}

// accountLimiter is a token bucket per key (an account), at most max
// keys: when full, the stalest bucket is forgotten (accounts are the
// operator's, so their number is small; the cap bounds memory anyway).
type accountLimiter struct {
	rate, burst float64
	max         int
	mu          sync.Mutex
	buckets     map[string]*accountBucket
}

type accountBucket struct {
	tokens float64
	last   time.Time
}

func newAccountLimiter(rate, burst float64, max int) *accountLimiter {
	return &accountLimiter{rate: rate, burst: burst, max: max, buckets: map[string]*accountBucket{}}
}

// take spends n of key's tokens at now; if they are not there, it says
// how long until they will be.
func (l *accountLimiter) take(key string, n float64, now time.Time) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= max(l.max, 1) {
			var stalest string
			var at time.Time
			for k, x := range l.buckets {
				if stalest == "" || x.last.Before(at) {
					stalest, at = k, x.last
				}
			}
			delete(l.buckets, stalest)
		}
		b = &accountBucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= n {
		b.tokens -= n
		return true, 0
	}
	return false, time.Duration((n - b.tokens) / l.rate * float64(time.Second))
}
