package sipserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The Record-Route token and the dialogs it opens.
//
// An in-dialog request that follows our Record-Route may be forwarded
// without authentication: a caller without an account must be able to
// send BYE and in-call MESSAGEs. That must not make us an open relay, so
// such a request is forwarded only when:
//   - its Route to us carries a token we made for this dialog: an HMAC,
//     under the server's secret, of the Call-ID, the caller's From tag,
//     the two ends' addresses (From and To) and the time it was issued; it
//     is good for maxDialogLifetime (so a token copied from one call does
//     not open another, nor does it last forever);
//   - the dialog was established through us: we saw its 2xx, and keep
//     its two tags, the two ends' Contacts and the Record-Route set;
//   - the next hop is one the dialog allows: the other end's Contact
//     (the remote target, RFC 3261 section 12.2.1.1) or an entry of the
//     dialog's route set, not a host the request names on its own.

const (
	// maxDialogLifetime bounds how long a dialog's token and entry last.
	maxDialogLifetime = 12 * time.Hour
	// maxEarlyDialog bounds an early dialog's entry (timer C, RFC 3261
	// section 16.6 step 11: an INVITE is given up after 3 minutes).
	maxEarlyDialog = 3 * time.Minute
	// maxDialogs bounds the dialogs remembered.
	maxDialogs   = 50_000
	tokenVersion = "rr1"
)

// dialogEnds is the part of a request the token binds: the caller's tag
// and the two ends' addresses.
func dialogEnds(req *sip.Request) (callID, fromTag, toTag, fromAOR, toAOR string) {
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	if f := req.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
		fromAOR = addrKey(f.Address)
	}
	if t := req.To(); t != nil {
		toTag, _ = t.Params.Get("tag")
		toAOR = addrKey(t.Address)
	}
	return
}

func addrKey(u sip.Uri) string {
	return strings.ToLower(u.Scheme) + ":" + u.User + "@" + strings.ToLower(u.Host)
}

func (s *Server) tokenMAC(issued uint64, callID, callerTag, callerAOR, calleeAOR string) []byte {
	m := s.macs.get()
	defer s.macs.put(m)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], issued)
	io.WriteString(m, tokenVersion)
	m.Write(ts[:])
	for _, v := range [...]string{callID, callerTag, callerAOR, calleeAOR} {
		m.Write(zero[:])
		io.WriteString(m, v)
	}
	return m.Sum(make([]byte, 0, sha256.Size))[:16]
}

// rrToken makes the token of the dialog req (a dialog-forming request)
// starts.
func (s *Server) rrToken(req *sip.Request, now time.Time) string {
	callID, fromTag, _, fromAOR, toAOR := dialogEnds(req)
	issued := uint64(now.Unix())
	b := make([]byte, 8, 24)
	binary.BigEndian.PutUint64(b, issued)
	b = append(b, s.tokenMAC(issued, callID, fromTag, fromAOR, toAOR)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkToken reports whether tok was made by us for req's dialog, in
// either direction (the caller's requests carry its tag in From, the
// callee's in To), and has not expired.
func (s *Server) checkToken(tok string, req *sip.Request, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 24 {
		return false
	}
	issued := binary.BigEndian.Uint64(b[:8])
	at := time.Unix(int64(issued), 0)
	if now.Sub(at) > maxDialogLifetime || at.After(now.Add(time.Minute)) {
		return false
	}
	callID, fromTag, toTag, fromAOR, toAOR := dialogEnds(req)
	return hmac.Equal(b[8:], s.tokenMAC(issued, callID, fromTag, fromAOR, toAOR)) ||
		hmac.Equal(b[8:], s.tokenMAC(issued, callID, toTag, toAOR, fromAOR))
}

// dialogKey names a dialog: its Call-ID and its two tags, in order.
type dialogKey struct{ callID, tag1, tag2 string }

func keyOf(callID, a, b string) dialogKey {
	if a > b {
		a, b = b, a
	}
	return dialogKey{callID, a, b}
}

// dialog is what we keep of a dialog established through us.
type dialog struct {
	hops    map[string]bool // next hops allowed: both Contacts, the route set
	flows   map[string]flow // each end's Contact (host:port) -> the flow it came on
	early   bool            // from a provisional response: ends if the request fails
	expires time.Time
}

// dialogs is the bounded table of dialogs established through us.
type dialogs struct {
	mu  sync.Mutex
	max int
	m   map[dialogKey]*dialog
}

func newDialogs(max int) *dialogs { return &dialogs{max: max, m: map[dialogKey]*dialog{}} }

// established records (or refreshes, on a target refresh) the dialog a
// response to req creates: early for a provisional response, confirmed
// for a 2xx. It returns false when the table is full.
func (d *dialogs) established(req *sip.Request, res *sip.Response, isOurs func(sip.Uri) bool, now time.Time) bool {
	callID, fromTag, _, _, _ := dialogEnds(req)
	early := res.IsProvisional()
	toTag := ""
	if t := res.To(); t != nil {
		toTag, _ = t.Params.Get("tag")
	}
	if callID == "" || fromTag == "" || toTag == "" {
		return false
	}
	dl := &dialog{hops: map[string]bool{}, flows: map[string]flow{}, early: early, expires: now.Add(maxDialogLifetime)}
	if early {
		dl.expires = now.Add(maxEarlyDialog)
	}
	ends := [...]struct {
		c *sip.ContactHeader
		f flow
	}{{req.Contact(), flow{req.Source(), req.Transport()}}, {res.Contact(), flow{res.Source(), res.Transport()}}}
	for _, e := range ends {
		if e.c != nil {
			hp := hostPort(e.c.Address)
			dl.hops[hp] = true
			if e.f.source != "" && e.f.transport != "" {
				dl.flows[hp] = e.f
			}
		}
	}
	for _, h := range res.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			// sipgo parses one address per header (a comma list
			// becomes several): no need to print and parse it again.
			if !isOurs(rr.Address) {
				dl.hops[hostPort(rr.Address)] = true
			}
			continue
		}
		for _, v := range splitList(h.Value()) {
			var u sip.Uri
			var p sip.HeaderParams
			if _, err := sip.ParseAddressValue(v, &u, &p); err == nil && !isOurs(u) {
				dl.hops[hostPort(u)] = true
			}
		}
	}
	k := keyOf(callID, fromTag, toTag)
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.m[k]; ok && !old.early {
		// A target refresh (re-INVITE) or a late response of a confirmed
		// dialog: its hops are added (the route set stays the one of the
		// dialog's creation, RFC 3261 section 12.2, and a re-INVITE's 2xx
		// may not carry it all), and a 2xx extends it.
		for h := range dl.hops {
			old.hops[h] = true
		}
		for h, f := range dl.flows {
			old.flows[h] = f
		}
		if !early {
			old.expires = dl.expires
		}
		return true
	}
	if _, ok := d.m[k]; !ok && len(d.m) >= d.max {
		d.sweepLocked(now)
		if len(d.m) >= d.max {
			return false
		}
	}
	d.m[k] = dl
	return true
}

// failed forgets the early dialog a failed request had made (a token
// from a call answered 486 opens nothing).
func (d *dialogs) failed(req *sip.Request, res *sip.Response) {
	callID, fromTag, _, _, _ := dialogEnds(req)
	toTag := ""
	if t := res.To(); t != nil {
		toTag, _ = t.Params.Get("tag")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := keyOf(callID, fromTag, toTag)
	if dl, ok := d.m[k]; ok && dl.early {
		delete(d.m, k)
	}
}

// ended forgets a dialog (its BYE was answered 2xx).
func (d *dialogs) ended(req *sip.Request) {
	callID, fromTag, toTag, _, _ := dialogEnds(req)
	d.endedIDs(callID, fromTag, toTag)
}

// endedIDs forgets the dialog of a Call-ID and two tags.
func (d *dialogs) endedIDs(callID, fromTag, toTag string) {
	d.mu.Lock()
	delete(d.m, keyOf(callID, fromTag, toTag))
	d.mu.Unlock()
}

// allows reports whether req belongs to a dialog established through us
// and goes to a next hop the dialog allows.
func (d *dialogs) allows(req *sip.Request, nextHop string, now time.Time) bool {
	callID, fromTag, toTag, _, _ := dialogEnds(req)
	if toTag == "" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.m[keyOf(callID, fromTag, toTag)]
	return ok && now.Before(dl.expires) && dl.hops[nextHop]
}

// flow is the connection (or UDP source) a dialog's end reached us on.
type flow struct{ source, transport string }

// flowTo returns the flow on which the end of req's dialog whose Contact
// is nextHop reached us. A WebSocket client's Contact names a host that
// does not exist (RFC 7118 section 5: "df7jal23ls0d.invalid"), and any
// connection-oriented client behind NAT may not be reachable at its
// Contact: the request goes back on the connection the dialog came on
// (RFC 5626 section 5.3 in spirit, without Outbound).
func (d *dialogs) flowTo(req *sip.Request, nextHop string, now time.Time) (flow, bool) {
	callID, fromTag, toTag, _, _ := dialogEnds(req)
	if toTag == "" {
		return flow{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.m[keyOf(callID, fromTag, toTag)]
	if !ok || !now.Before(dl.expires) {
		return flow{}, false
	}
	f, ok := dl.flows[nextHop]
	return f, ok
}

func (d *dialogs) sweep(now time.Time) {
	d.mu.Lock()
	d.sweepLocked(now)
	d.mu.Unlock()
}

func (d *dialogs) sweepLocked(now time.Time) {
	for k, dl := range d.m {
		if !now.Before(dl.expires) {
			delete(d.m, k)
		}
	}
}

func (d *dialogs) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}
