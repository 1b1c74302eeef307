package sipserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"github.com/paysip/paysip/sipext"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipreg"
)

// onRegister is the registrar (RFC 3261 section 10.3).
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	to := req.To()
	if to == nil || req.CallID() == nil || req.CSeq() == nil {
		s.respond(tx, req, sip.StatusBadRequest, "Bad Request")
		return
	}
	if !s.isLocal(to.Address) {
		s.respond(tx, req, sip.StatusForbidden, "Forbidden: not this domain")
		return
	}
	aor := sipreg.AOR(sip.Uri{User: to.Address.User, Host: s.cfg.Domain})
	// Contacts first: a malformed request is refused before any challenge.
	var contacts []*sip.ContactHeader
	wildcard := false
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			s.respond(tx, req, sip.StatusBadRequest, "Bad Request: Contact")
			return
		}
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		contacts = append(contacts, c)
	}
	// RFC 3327 section 5.3: a registrar may refuse to store a Path by
	// local policy. A Path makes us send requests where it says, so it is
	// accepted only from a trusted edge proxy; from anyone else it would
	// turn us into a reflector towards any host.
	var path []string
	for _, p := range req.GetHeaders("Path") {
		path = append(path, splitList(p.Value())...)
	}
	if len(path) > 0 && !s.trustedEdge(req.Source()) {
		s.log.Warn("REGISTER with a Path from an untrusted source", "aor", aor, "from", req.Source())
		s.respond(tx, req, sip.StatusForbidden, "Forbidden: Path accepted only from a trusted edge proxy")
		return
	}
	owner := ""
	if !s.cfg.Open {
		user := s.authenticate(req, tx, false)
		if user == "" {
			return
		}
		// A registration binds contacts only for the account's own
		// address, or lists the account in the directory.
		switch to.Address.User {
		case user:
		case DirectoryUser:
			for _, c := range contacts {
				if own, _ := c.Params.Get(sipext.ParamAOR); strings.Trim(own, `"`) != "sip:"+user+"@"+s.cfg.Domain {
					s.respond(tx, req, sip.StatusForbidden, "Forbidden: a directory listing must name your own address in +paysip.aor")
					return
				}
			}
		default:
			s.log.Warn("registration for another account's address", "user", user, "aor", aor)
			s.respond(tx, req, sip.StatusForbidden, "Forbidden: you may register only your own address")
			return
		}
		owner = user
	}
	r := sipreg.Request{AOR: aor, Owner: owner, Path: path, Contacts: contacts, Wildcard: wildcard, CallID: req.CallID().Value(),
		CSeq: req.CSeq().SeqNo, Source: req.Source(), Transport: req.Transport()}
	if e := req.GetHeader("Expires"); e != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(e.Value()), 10, 32)
		if err != nil {
			s.respond(tx, req, sip.StatusBadRequest, "Bad Request: Expires")
			return
		}
		v := uint32(n)
		r.Expires = &v
	}
	branch, _ := req.Via().Params.Get("branch")
	bindings, err := s.reg.Apply(r, s.now())
	if errors.Is(err, sipreg.ErrOutOfOrder) {
		if b, ok := s.retransmission(r, branch); ok {
			bindings, err = b, nil
		}
	} else if err == nil {
		s.applied.put(r.CallID, appliedRegister{cseq: r.CSeq, branch: branch, at: s.now()})
	}
	if err != nil {
		s.registerRefused(req, tx, err, aor, owner)
		return
	}
	var res *sip.Response
	if mt, ok := tx.(*meteredTx); ok && isStateless(mt.ServerTransaction) {
		res = registerOK(req)
	} else {
		res = sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	}
	now := s.now()
	for _, b := range bindings {
		c := b.Contact          // a copy already (Apply and Lookup clone what they return)
		unquoteParams(c.Params) // sipgo quotes them again: no ""doubled"" quotes
		secs := int(b.Expires.Sub(now).Seconds() + 0.5)
		c.Params.Add("expires", strconv.Itoa(secs))
		res.AppendHeader(c)
	}
	for _, p := range r.Path {
		res.AppendHeader(sip.NewHeader("Path", p))
	}
	if len(r.Path) > 0 {
		res.AppendHeader(sip.NewHeader("Supported", "path"))
	}
	res.AppendHeader(sip.NewHeader("Date", sipDate(now)))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("register respond", "err", err)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) { // its arguments cost 3 allocations
		s.log.Debug("registered", "aor", aor, "bindings", len(bindings), "from", req.Source(), "transport", req.Transport())
	}
}

func isStateless(tx sip.ServerTransaction) bool {
	_, ok := tx.(*statelessTx)
	return ok
}

// registerOK is the 200 to a REGISTER answered on the stateless path
// (fastpath.go) as sip.NewResponseFromRequest makes it (RFC 3261 section
// 8.2.6.2: the request's Via, From, To with a tag of ours, Call-ID and
// CSeq; the top Via's empty rport filled in, RFC 3581 section 4), but
// sharing the request's headers instead of cloning each: the request is
// dropped once answered, and writing a response only reads them. To
// (given a tag) and a top Via given rport are copies. Cloning them all
// was 5% of an open registrar's CPU.
func registerOK(req *sip.Request) *sip.Response {
	res := sip.NewResponse(sip.StatusOK, "OK")
	res.SipVersion = req.SipVersion
	for i, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok && i == 0 {
			if val, exists := v.Params.Get("rport"); exists && val == "" {
				v = v.Clone()
				host, port, _ := net.SplitHostPort(req.Source())
				v.Params.Add("rport", port)
				v.Params.Add("received", host)
				h = v
			}
		}
		res.AppendHeader(h)
	}
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		to := &sip.ToHeader{DisplayName: h.DisplayName, Address: h.Address, Params: h.Params.Clone()}
		if !to.Params.Has("tag") {
			to.Params.Add("tag", newTag())
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	res.SetBody(nil)
	res.SetTransport(req.Transport())
	res.SetDestination(req.Source())
	return res
}

// newTag is a To tag (RFC 3261 section 19.3: random, at least 32 bits),
// shaped as sipgo's (a version 4 UUID).
func newTag() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// sipDate is now as a Date header value (RFC 3261 section 20.17, RFC
// 1123 in GMT), formatted once a second rather than once per answer.
func sipDate(now time.Time) string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &formattedDate{sec: sec, text: now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")}
	lastDate.Store(d)
	return d.text
}

type formattedDate struct {
	sec  int64
	text string
}

var lastDate atomic.Pointer[formattedDate]

// registerRefused answers a REGISTER that Apply refused (err not nil).
func (s *Server) registerRefused(req *sip.Request, tx sip.ServerTransaction, err error, aor, owner string) {
	var brief *sipreg.IntervalTooBriefError
	switch {
	case errors.As(err, &brief):
		s.respond(tx, req, sip.StatusIntervalToBrief, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(int(brief.Min))))
	case errors.Is(err, sipreg.ErrWildcard):
		s.respond(tx, req, sip.StatusBadRequest, "Bad Request: "+err.Error())
	case errors.Is(err, sipreg.ErrOutOfOrder):
		s.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error: "+err.Error())
	case errors.Is(err, sipreg.ErrTooManyContacts):
		// RFC 3261 section 10.3 lets the registrar refuse by local policy.
		s.log.Warn("REGISTER refused: too many contacts", "aor", aor, "owner", owner, "from", req.Source())
		s.respond(tx, req, sip.StatusForbidden, "Forbidden: too many contacts for this address (at most "+strconv.Itoa(s.reg.Limits().MaxContacts)+")")
	case errors.Is(err, sipreg.ErrFull):
		s.log.Warn("REGISTER refused: registrar full", "aor", aor, "from", req.Source(), "bindings", s.reg.Count())
		s.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable: registrar full", sip.NewHeader("Retry-After", "300"))
	default:
		s.log.Error("REGISTER", "err", err)
		s.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error")
	}
}

// appliedRegister is the last REGISTER applied for a Call-ID.
type appliedRegister struct {
	cseq   uint32
	branch string
	at     time.Time
}

// appliedKeep is how long an applied REGISTER is remembered: the time a
// client retransmits over UDP (64*T1, RFC 3261 Timer J); appliedMax
// bounds the log (beyond it the oldest are forgotten first, and a late
// retransmission of one of them is refused like any reused CSeq).
const (
	appliedKeep = 32 * time.Second
	appliedMax  = 16384
)

// appliedLog remembers, per Call-ID, the CSeq and top Via branch of the
// last REGISTER applied (bounded: the least recent forgotten first).
type appliedLog struct {
	mu sync.Mutex
	m  *lru[string, appliedRegister]
}

func (l *appliedLog) put(callID string, a appliedRegister) {
	l.mu.Lock()
	l.m.put(callID, a)
	l.mu.Unlock()
}

func (l *appliedLog) get(callID string) (appliedRegister, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.get(callID)
}

// sweep forgets what is older than appliedKeep (a new table: Go maps do
// not give back their buckets).
func (l *appliedLog) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := newLRU[string, appliedRegister](appliedMax)
	for e := l.m.head.prev; e != &l.m.head; e = e.prev { // oldest first
		if now.Sub(e.v.at) < appliedKeep {
			kept.put(e.k, e.v)
		}
	}
	l.m = kept
}

// retransmission answers a REGISTER the registry refused as out of order
// when it is a retransmission of the request that made the owner's
// bindings -- same Call-ID, CSeq and Via branch (RFC 3261 section
// 17.2.3): the stateless path has no transaction to absorb it
// (fastpath.go) -- with those bindings, unchanged. Anything else, a new
// request reusing a CSeq included, stays refused (section 10.3 step 7).
func (s *Server) retransmission(r sipreg.Request, branch string) ([]sipreg.Binding, bool) {
	if a, ok := s.applied.get(r.CallID); !ok || a.cseq != r.CSeq || a.branch != branch || branch == "" {
		return nil, false
	}
	var mine []sipreg.Binding
	same := false
	for _, b := range s.reg.Lookup(r.AOR, s.now()) {
		if b.Owner != r.Owner {
			continue
		}
		mine = append(mine, b)
		if b.CallID == r.CallID {
			if b.CSeq != r.CSeq {
				return nil, false
			}
			same = true
		}
	}
	return mine, same
}

// splitList splits a header value on commas outside <> and quotes.
func splitList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i, c := range v {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if t := strings.TrimSpace(v[start:]); t != "" {
		out = append(out, t)
	}
	return out
}
