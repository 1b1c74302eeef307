package sipserver

import (
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
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sipreg"
)

// WatchEvent is the SUBSCRIBE event package of script watches.
const WatchEvent = "paysip-watch"

// bitcoinAPI is the server-side user agent at sip:bitcoin@DOMAIN: the
// seed's bridge through which browsers, phones and other networks reach
// the Bitcoin network with nothing but SIP.
type bitcoinAPI struct {
	s       *Server
	limit   *sourceLimiter // requests per source address
	mu      sync.Mutex
	watches map[string]*watch
	perUser map[string]int // watches per user
	poll    time.Duration
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
		watches: map[string]*watch{}, perUser: map[string]int{}, poll: time.Second}
}

// allow takes a token from the source address's bucket (rate, burst
// twice that). Per source, not per account: nobody can spend another's
// allowance.
func (a *bitcoinAPI) allow(src string, now time.Time) (bool, time.Duration) {
	ip := sourceIP(src)
	if a.s.lim.exempt(ip) {
		return true, 0
	}
	return a.limit.take(ip, 1, now)
}

func (a *bitcoinAPI) reply(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body *chainapi.Response) {
	res := sip.NewResponseFromRequest(req, code, reason, chainapi.Encode(body))
	res.AppendHeader(sip.NewHeader("Content-Type", paywire.ContentType))
	tx.Respond(res)
}

func (a *bitcoinAPI) fail(tx sip.ServerTransaction, req *sip.Request, code int, reason, apiCode string, id string) {
	a.s.log.Warn("bitcoin API refused a request", "code", code, "reason", reason, "from", req.Source())
	a.reply(tx, req, code, reason, &chainapi.Response{Type: chainapi.TypeError, ID: id, Code: apiCode, Reason: reason})
}

// handle serves MESSAGE and SUBSCRIBE requests to the API.
func (a *bitcoinAPI) handle(req *sip.Request, tx sip.ServerTransaction) {
	s := a.s
	if req.Method != sip.MESSAGE && req.Method != sip.SUBSCRIBE {
		s.respond(tx, req, 405, "Method Not Allowed", sip.NewHeader("Allow", "MESSAGE, SUBSCRIBE"))
		return
	}
	user := "anonymous@" + sourceIP(req.Source()).String()
	if !s.cfg.Open {
		if user = s.authenticate(req, tx, false); user == "" {
			return
		}
	}
	if ok, wait := a.allow(req.Source(), s.now()); !ok {
		s.respond(tx, req, 503, "Service Unavailable: rate limit", sip.NewHeader("Retry-After", strconv.Itoa(int(math.Ceil(max(1, wait.Seconds()))))))
		return
	}
	if req.Method == sip.SUBSCRIBE && req.Transport() == "UDP" && !s.udp.proved(req.Source()) {
		// A UDP source may be spoofed: NOTIFYs to it would make us a
		// reflector. A source proves its address by authenticating with
		// a nonce sent to it (udpguard.go).
		s.respond(tx, req, 403, "Forbidden: subscribe over TCP, TLS or WebSocket, or authenticate from this address")
		return
	}
	if ct := req.ContentType(); ct == nil || !strings.HasPrefix(strings.ToLower(ct.Value()), paywire.ContentType) {
		s.respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", paywire.ContentType))
		return
	}
	r, err := chainapi.Decode(req.Body())
	if err != nil {
		a.fail(tx, req, 400, err.Error(), "bad_request", "")
		return
	}
	if s.cfg.Chain == nil {
		a.fail(tx, req, 503, "no Bitcoin node configured", "unavailable", r.ID)
		return
	}
	if req.Method == sip.SUBSCRIBE && r.Type != chainapi.TypeWatch && r.Type != chainapi.TypeUnwatch {
		a.fail(tx, req, 489, "SUBSCRIBE carries watch or unwatch", "bad_event", r.ID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := s.cfg.Chain
	resp := &chainapi.Response{Type: r.Type, ID: r.ID}
	switch r.Type {
	case chainapi.TypeTip:
		if resp.Height, err = c.TipHeight(ctx); err != nil {
			break
		}
	case chainapi.TypeFee:
		target := r.Target
		if target == 0 {
			target = 6
		}
		var rate int64
		fr, ferr := c.FeeRate(ctx, target)
		rate, err = int64(fr), ferr
		resp.FeeRate = rate
	case chainapi.TypeCoins, chainapi.TypeWatch, chainapi.TypeUnwatch:
		script, serr := a.script(r)
		if serr != nil {
			a.fail(tx, req, 400, serr.Error(), "bad_request", r.ID)
			return
		}
		resp.Script = hex.EncodeToString(script)
		switch r.Type {
		case chainapi.TypeCoins:
			var coins []chain.Utxo
			if coins, err = c.Coins(ctx, [][]byte{script}); err == nil {
				resp.Coins = apiCoins(coins)
			}
		case chainapi.TypeWatch:
			if resp.Expires, err = a.addWatch(user, script, r.Expires, req); err != nil {
				code, hdr := 403, sip.Header(nil)
				if errors.Is(err, errTooManyWatches) {
					code, hdr = 503, sip.NewHeader("Retry-After", "60")
				}
				a.s.log.Warn("bitcoin API refused a watch", "user", user, "err", err, "from", req.Source())
				res := sip.NewResponseFromRequest(req, code, err.Error(), chainapi.Encode(&chainapi.Response{Type: chainapi.TypeError, ID: r.ID, Code: "limit", Reason: err.Error()}))
				res.AppendHeader(sip.NewHeader("Content-Type", paywire.ContentType))
				if hdr != nil {
					res.AppendHeader(hdr)
				}
				tx.Respond(res)
				return
			}
		case chainapi.TypeUnwatch:
			a.removeWatch(user, script)
		}
	case chainapi.TypeBroadcast:
		raw, _ := hex.DecodeString(r.Tx)
		tx2, derr := channel.DecodeTx(raw)
		if derr != nil {
			a.fail(tx, req, 400, "transaction: "+derr.Error(), "bad_request", r.ID)
			return
		}
		resp.TxID = tx2.TxHash().String()
		if err = c.Broadcast(ctx, tx2); errors.Is(err, chain.ErrAlreadyKnown) {
			err = nil
		}
		if err != nil {
			code := "rejected"
			switch {
			case errors.Is(err, chain.ErrNonFinal):
				code = "non_final"
			case errors.Is(err, chain.ErrConflict):
				code = "conflict"
			}
			a.fail(tx, req, 488, err.Error(), code, r.ID)
			return
		}
	case chainapi.TypeTxStatus:
		h, _ := chainhash.NewHashFromStr(r.TxID)
		var st chain.TxStatus
		if st, err = c.TxStatus(ctx, *h); err == nil {
			resp.TxID = r.TxID
			resp.Known, resp.Confirmations = &st.Known, &st.Confirmations
		}
	}
	if err != nil {
		a.s.log.Error("bitcoin API: node error", "err", err)
		a.fail(tx, req, 503, "node error", "unavailable", r.ID)
		return
	}
	if req.Method == sip.SUBSCRIBE {
		a.acceptSubscribe(tx, req, resp)
		return
	}
	a.reply(tx, req, 200, "OK", resp)
}

func (a *bitcoinAPI) script(r *chainapi.Request) ([]byte, error) {
	if r.Script != "" {
		return hex.DecodeString(r.Script)
	}
	addr, err := btcutil.DecodeAddress(r.Address, a.s.cfg.Chain.Params())
	if err != nil || !addr.IsForNet(a.s.cfg.Chain.Params()) {
		return nil, fmt.Errorf("address %q is not for %s", r.Address, a.s.cfg.Chain.Params().Name)
	}
	return txscript.PayToAddrScript(addr)
}

func apiCoins(us []chain.Utxo) []chainapi.Coin {
	out := make([]chainapi.Coin, 0, len(us))
	for _, u := range us {
		out = append(out, chainapi.Coin{TxID: u.Outpoint.Hash.String(), Vout: u.Outpoint.Index, ValueSat: u.Value, Confirmations: u.Confirmations})
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
	resp := &chainapi.Response{Type: chainapi.TypeNotify, Script: hex.EncodeToString(script), Coins: apiCoins(coins)}
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
		if _, err := a.s.client.Do(ctx, req); err != nil {
			a.s.log.Debug("notification not delivered", "to", b.Contact.Address.String(), "err", err)
		}
	}
}
