package sipserver

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipreg"
)

// Listing is one priced endpoint of the directory: a contact registered at
// sip:directory@DOMAIN whose parameters carry its offer (the original
// write-up's shared address). docs/protocol.md describes the parameters.
type Listing = sipext.Listing

// Directory lists the priced endpoints registered now, by address.
func (s *Server) Directory() []Listing {
	now := s.now()
	out := []Listing{}
	for _, b := range s.reg.Lookup(sipreg.AOR(sipURI(DirectoryUser, s.cfg.Domain)), now) {
		l := Listing{Contact: b.Contact.Address.String(), ExpiresIn: int(b.Expires.Sub(now).Seconds())}
		l.AOR, _ = b.Param(sipext.ParamAOR)
		l.Name, _ = b.Param(sipext.ParamName)
		l.PayeeKey, _ = b.Param(sipext.ParamKey)
		if p, ok := b.Param(sipext.ParamPrice); ok {
			l.PriceSatPerMin, _ = strconv.ParseInt(p, 10, 64)
		}
		if l.AOR == "" || l.PriceSatPerMin <= 0 {
			continue // a member that only listens (a caller asking)
		}
		out = append(out, l)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].AOR != out[j].AOR {
			return out[i].AOR < out[j].AOR
		}
		return out[i].Contact < out[j].Contact
	})
	return out
}

func (s *Server) directoryDoc(entries []Listing) sipext.Directory {
	return sipext.Directory{Domain: s.cfg.Domain, Directory: "sip:" + DirectoryUser + "@" + s.cfg.Domain, Entries: entries}
}

func (s *Server) serveDirectory(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s.directoryDoc(s.Directory()))
}

// unquoteParams strips the quotes of quoted parameter values that sipgo
// quotes again when it writes them (those with a space or a tab): a
// listing's +paysip.name="Maths tutor" came back to its registrant as
// +paysip.name=""Maths tutor"", a Contact SIP.js cannot parse (so it
// never saw its REGISTER answered). RFC 3261 section 25.1 quoted-string.
func unquoteParams(params sip.HeaderParams) {
	for i, kv := range params {
		v := kv.V
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && strings.ContainsAny(v[1:len(v)-1], " \t") {
			params[i].V = v[1 : len(v)-1]
		}
	}
}

// DirectoryEvent is the SUBSCRIBE event package (RFC 6665 section 7.2) of
// the live directory: a SUBSCRIBE to sip:directory@DOMAIN with
// "Event: paysip-directory" is answered 200, then NOTIFYs carry the whole
// directory as JSON (the body of GET /api/directory) at once and whenever
// a listing appears, leaves or changes. docs/protocol.md describes it.
const DirectoryEvent = "paysip-directory"

// Limits of the live directory.
const (
	// DirectorySubsPerSource bounds the subscriptions one subscriber (an
	// account, or a source address without one) holds: a few tabs.
	DirectorySubsPerSource = 8
	// MaxDirectorySubs bounds them in total.
	MaxDirectorySubs = 2048
	// DirectoryMinExpires and DirectoryMaxExpires bound a subscription's
	// length (RFC 6665 section 4.2.1.1: the notifier may shorten it; a
	// shorter one than the minimum is refused with 423).
	DirectoryMinExpires = 60
	DirectoryMaxExpires = 3600
	// DirectoryDefaultExpires is the length without an Expires header.
	DirectoryDefaultExpires = 600
	// MaxDirectoryNotify bounds a NOTIFY's body: listings past it are left
	// out (by address order) and the document says "truncated".
	MaxDirectoryNotify = 60 << 10
	// directoryPoll is how often the registry is read while somebody
	// listens (a registration, an un-registration or an expiry shows up
	// within it; bindings written by other nodes of a cluster too).
	directoryPoll = 250 * time.Millisecond
)

// directoryFeed keeps the live directory's subscriptions.
type directoryFeed struct {
	s     *Server
	limit *sourceLimiter // SUBSCRIBEs per source address

	mu     sync.Mutex
	subs   map[string]*dirSub // by Call-ID, subscriber's tag
	per    map[string]int     // subscriptions per subscriber
	key    string             // what the directory says, less the expiry counters
	wake   chan struct{}
	closed bool
}

// dirSub is one subscription: its dialog (RFC 6665 section 4.1.2.4: the
// NOTIFYs go back along the flow the SUBSCRIBE came on, never to an
// address its Contact names) and its delivery state.
type dirSub struct {
	who     string
	dialog  subDialog
	expires time.Time
	sending bool   // a NOTIFY of this dialog is in flight
	dirty   bool   // the directory changed meanwhile: send again
	force   bool   // send even without a change (a new subscription, a refresh)
	sent    string // the key of the document last sent
	done    bool   // terminated
}

func newDirectoryFeed(s *Server) *directoryFeed {
	return &directoryFeed{s: s, limit: newSourceLimiter(2, 10, s.lim.MaxSources), subs: map[string]*dirSub{}, per: map[string]int{},
		wake: make(chan struct{}, 1)}
}

// isDirectorySubscribe tells a SUBSCRIBE to the live directory: its Event
// names the package. Other requests to sip:directory@ are forked to the
// members, as before (the original write-up's shared address).
func isDirectorySubscribe(req *sip.Request) bool {
	if req.Method != sip.SUBSCRIBE {
		return false
	}
	ev, ok := parseEvent(headerValue(req, "Event", "o"))
	return ok && ev == DirectoryEvent
}

func headerValue(req *sip.Request, names ...string) string {
	for _, n := range names {
		if h := req.GetHeader(n); h != nil {
			return h.Value()
		}
	}
	return ""
}

// parseEvent reads an Event header value (RFC 6665 section 8.4: the
// event type, then parameters): the package name, lower-cased. An id
// parameter is refused: this package has one subscription per dialog.
func parseEvent(v string) (string, bool) {
	if len(v) > 256 {
		return "", false
	}
	name, params, _ := strings.Cut(v, ";")
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || strings.ContainsAny(name, " \t,\"") {
		return "", false
	}
	for _, p := range strings.Split(params, ";") {
		if k, _, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(strings.TrimSpace(k), "id") {
			return "", false
		}
	}
	return name, true
}

// parseExpires reads a SUBSCRIBE's Expires (RFC 6665 section 4.1.2.1):
// absent is the default, 0 ends the subscription, a value under the
// minimum is too brief (423), one over the maximum is shortened.
func parseExpires(v string, present bool) (secs int, tooBrief bool, ok bool) {
	if !present {
		return DirectoryDefaultExpires, false, true
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, false, false
	}
	switch {
	case n == 0:
		return 0, false, true
	case n < DirectoryMinExpires:
		return 0, true, true
	case n > DirectoryMaxExpires:
		return DirectoryMaxExpires, false, true
	}
	return int(n), false, true
}

// handle serves a SUBSCRIBE to the live directory: a new subscription, a
// refresh, or an end (Expires: 0), RFC 6665 section 4.2.1.
func (f *directoryFeed) handle(req *sip.Request, tx sip.ServerTransaction) {
	s := f.s
	now := s.now()
	if ok, wait := f.allow(req.Source(), now); !ok {
		s.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable: rate limit", sip.NewHeader("Retry-After", strconv.Itoa(int(math.Ceil(max(1, wait.Seconds()))))))
		return
	}
	if req.Transport() == "UDP" && (s.udp == nil || !s.udp.proved(req.Source())) {
		// NOTIFYs to a spoofed UDP source would make us a reflector
		// (as for the SIP API's watches).
		s.respond(tx, req, sip.StatusForbidden, "Forbidden: subscribe over TCP, TLS or WebSocket, or authenticate from this address")
		return
	}
	from, to, cid := req.From(), req.To(), req.CallID()
	contact := req.Contact()
	if from == nil || to == nil || cid == nil || req.CSeq() == nil {
		s.respond(tx, req, sip.StatusBadRequest, "Bad Request")
		return
	}
	remoteTag, _ := from.Params.Get("tag")
	if remoteTag == "" || len(remoteTag) > 128 || len(cid.Value()) > 256 {
		s.respond(tx, req, sip.StatusBadRequest, "Bad Request: From tag")
		return
	}
	eh := req.GetHeader("Expires")
	expires, brief, ok := parseExpires(headerValue(req, "Expires"), eh != nil)
	switch {
	case !ok:
		s.respond(tx, req, sip.StatusBadRequest, "Bad Request: Expires")
		return
	case brief:
		s.respond(tx, req, sip.StatusIntervalToBrief, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(DirectoryMinExpires)))
		return
	}
	// The directory is public (GET /api/directory too): no account is
	// needed. One that sends credentials is counted as its account.
	who := "source:" + sourceIP(req.Source()).String()
	if !s.cfg.Open && (req.GetHeader("Authorization") != nil) {
		user := s.authenticate(req, tx, false)
		if user == "" {
			return
		}
		who = "user:" + user
	}
	key := cid.Value() + "\x00" + remoteTag
	localTag, _ := to.Params.Get("tag")

	f.mu.Lock()
	sub := f.subs[key]
	switch {
	case localTag != "" && (sub == nil || sub.dialog.localTag != localTag):
		f.mu.Unlock()
		// RFC 6665 section 4.2.1.2: a refresh of a subscription we do
		// not have.
		s.respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist")
		return
	case sub == nil && expires == 0:
		f.mu.Unlock()
		// A fetch (RFC 6665 section 4.4.3): answered, one final NOTIFY.
		sub = &dirSub{who: who, dialog: f.newDialog(req, contact, remoteTag), done: true}
		f.accept(tx, req, sub, 0)
		go f.notify(sub, f.current(), "terminated;reason=timeout")
		return
	case sub == nil:
		if len(f.subs) >= MaxDirectorySubs || f.per[who] >= DirectorySubsPerSource {
			n := f.per[who]
			f.mu.Unlock()
			s.log.Warn("directory subscription refused: too many", "who", who, "theirs", n, "from", req.Source())
			s.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable: too many directory subscriptions", sip.NewHeader("Retry-After", "60"))
			return
		}
		sub = &dirSub{who: who, dialog: f.newDialog(req, contact, remoteTag), expires: now.Add(time.Duration(expires) * time.Second)}
		f.subs[key] = sub
		f.per[who]++
		f.mu.Unlock()
		f.accept(tx, req, sub, expires)
		f.send(sub, true)
		f.poke()
		return
	}
	// A refresh, or an end.
	if expires == 0 {
		f.dropLocked(key)
	} else {
		sub.expires = now.Add(time.Duration(expires) * time.Second)
		// NOTIFYs follow the flow of the latest SUBSCRIBE (a
		// subscriber that reconnected refreshes on its new one).
		sub.dialog.source, sub.dialog.transport = req.Source(), req.Transport()
	}
	f.mu.Unlock()
	f.accept(tx, req, sub, expires)
	if expires == 0 {
		go f.notify(sub, f.current(), "terminated;reason=timeout")
		return
	}
	f.send(sub, true)
}

func (f *directoryFeed) allow(src string, now time.Time) (bool, time.Duration) {
	ip := sourceIP(src)
	if f.s.lim.exempt(ip) {
		return true, 0
	}
	return f.limit.take(ip, 1, now)
}

func (f *directoryFeed) newDialog(req *sip.Request, contact *sip.ContactHeader, remoteTag string) subDialog {
	d := subDialog{callID: req.CallID().Value(), localTag: sip.GenerateTagN(16), remoteTag: remoteTag,
		local: sipURI(DirectoryUser, f.s.cfg.Domain), remote: req.From().Address,
		source: req.Source(), transport: req.Transport(), cseq: 0}
	d.target = d.remote
	if contact != nil {
		d.target = contact.Address
	}
	return d
}

// accept answers the SUBSCRIBE 200 with the subscription's length.
func (f *directoryFeed) accept(tx sip.ServerTransaction, req *sip.Request, sub *dirSub, expires int) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.To().Params.Add("tag", sub.dialog.localTag) // the dialog's, not one made up for the response
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res.AppendHeader(&sip.ContactHeader{Address: sub.dialog.local})
	if err := tx.Respond(res); err != nil {
		f.s.log.Debug("directory SUBSCRIBE respond", "err", err)
	}
}

func (f *directoryFeed) dropLocked(key string) {
	sub := f.subs[key]
	if sub == nil {
		return
	}
	sub.done = true
	delete(f.subs, key)
	if f.per[sub.who]--; f.per[sub.who] <= 0 {
		delete(f.per, sub.who)
	}
}

func (f *directoryFeed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// render makes the NOTIFY body of entries: the directory document, cut
// to MaxDirectoryNotify bytes. The key is the same document without the
// expiry counters (which change every second and are no news).
func (f *directoryFeed) render(entries []Listing) (body []byte, key string) {
	type doc struct {
		sipext.Directory
		Truncated bool `json:"truncated,omitempty"`
	}
	d := doc{Directory: f.s.directoryDoc(entries)}
	body, _ = json.Marshal(d)
	for len(body) > MaxDirectoryNotify && len(d.Entries) > 0 {
		d.Entries = d.Entries[:len(d.Entries)*3/4]
		d.Truncated = true
		body, _ = json.Marshal(d)
	}
	stripped := make([]Listing, len(d.Entries))
	copy(stripped, d.Entries)
	for i := range stripped {
		stripped[i].ExpiresIn = 0
	}
	k, _ := json.Marshal(stripped)
	return body, string(k) + strconv.FormatBool(d.Truncated)
}

// current renders the directory now.
func (f *directoryFeed) current() []byte {
	body, _ := f.render(f.s.Directory())
	return body
}

// run watches the directory while anybody listens, notifies its changes
// and ends subscriptions that expired, until ctx ends.
func (f *directoryFeed) run(ctx context.Context) {
	t := time.NewTicker(directoryPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.mu.Lock()
			f.closed = true
			f.mu.Unlock()
			return
		case <-t.C:
		case <-f.wake:
		}
		f.tick()
	}
}

func (f *directoryFeed) tick() {
	now := f.s.now()
	f.mu.Lock()
	var expired []*dirSub
	for k, sub := range f.subs {
		if now.After(sub.expires) {
			expired = append(expired, sub)
			f.dropLocked(k)
		}
	}
	listening := len(f.subs) > 0
	f.mu.Unlock()
	for _, sub := range expired {
		go f.notify(sub, f.current(), "terminated;reason=timeout")
	}
	if !listening {
		return
	}
	_, key := f.render(f.s.Directory())
	f.mu.Lock()
	if key == f.key {
		f.mu.Unlock()
		return
	}
	f.key = key
	subs := make([]*dirSub, 0, len(f.subs))
	for _, sub := range f.subs {
		subs = append(subs, sub)
	}
	f.mu.Unlock()
	for _, sub := range subs {
		f.send(sub, false)
	}
}

// send notifies sub of the directory if it changed since its last NOTIFY
// (or if force), one NOTIFY of a dialog at a time (their CSeq in order):
// a change while one is in flight sends the latest after it.
func (f *directoryFeed) send(sub *dirSub, force bool) {
	f.mu.Lock()
	sub.force = sub.force || force
	if sub.sending {
		sub.dirty = true
		f.mu.Unlock()
		return
	}
	sub.sending = true
	f.mu.Unlock()
	go func() {
		for {
			body, key := f.render(f.s.Directory())
			f.mu.Lock()
			send := sub.force || key != sub.sent
			sub.force, sub.dirty, sub.sent = false, false, key
			f.mu.Unlock()
			ok := true
			if send {
				ok = f.notify(sub, body, "")
			}
			f.mu.Lock()
			again := ok && sub.dirty && !sub.done && !f.closed
			if !again {
				sub.sending = false
				f.mu.Unlock()
				return
			}
			f.mu.Unlock()
		}
	}()
}

// notify sends one NOTIFY (state "" is active with the time left). A
// subscriber that does not take it (no answer, or an error: RFC 6665
// section 4.2.2) loses the subscription.
func (f *directoryFeed) notify(sub *dirSub, body []byte, state string) bool {
	f.mu.Lock()
	sub.dialog.cseq++
	d := sub.dialog // a copy: a refresh may move the flow meanwhile
	seq := d.cseq
	if state == "" {
		left := int(math.Ceil(sub.expires.Sub(f.s.now()).Seconds()))
		state = fmt.Sprintf("active;expires=%d", max(left, 0))
	}
	f.mu.Unlock()
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
	req.AppendHeader(sip.NewHeader("Event", DirectoryEvent))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/json"))
	req.AppendHeader(&sip.ContactHeader{Address: d.local})
	req.SetBody(body)
	req.SetTransport(d.transport)
	req.SetDestination(d.source)
	f.s.fromSIPPort(req)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.s.client.Do(ctx, req)
	if err == nil && res.IsSuccess() {
		return true
	}
	f.s.log.Debug("directory NOTIFY not taken: subscription ended", "to", d.source, "err", err, "res", res)
	f.mu.Lock()
	for k, x := range f.subs {
		if x == sub {
			f.dropLocked(k)
		}
	}
	f.mu.Unlock()
	return false
}

// subscriptions counts the live subscriptions (tests).
func (f *directoryFeed) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}
