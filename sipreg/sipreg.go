// Package sipreg is the registrar's location service (RFC 3261 section
// 10.3): bindings of contacts to addresses-of-record, with expiry,
// refresh, removal, wildcard un-registration, Call-ID/CSeq ordering, the
// Path a registration came through (RFC 3327) and the instance id that
// browser user agents look for (RFC 5626 +sip.instance, reg-id).
//
// It is pure: no sockets, and time is passed in. Package sipserver runs it.
package sipreg

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Limits on expiry (seconds).
const (
	DefaultExpires = 3600
	MinExpires     = 60
	MaxExpires     = 86400
)

// Errors of Apply.
var (
	ErrWildcard   = errors.New("wildcard Contact needs Expires: 0 and no other contact") // 400
	ErrOutOfOrder = errors.New("CSeq not above the one of this Call-ID")                 // 500
)

// IntervalTooBriefError asks for a longer expiry (423, Min-Expires).
type IntervalTooBriefError struct{ Min uint32 }

func (e *IntervalTooBriefError) Error() string {
	return fmt.Sprintf("interval too brief: at least %d s", e.Min)
}

// Binding is one contact of an address-of-record.
type Binding struct {
	AOR       string
	Contact   *sip.ContactHeader // as registered, without its expires parameter
	Key       string             // +sip.instance (with reg-id) if given, else the contact URI
	Expires   time.Time
	CallID    string
	CSeq      uint32
	Path      []string // Path header values, top first: the route to reach the contact
	Source    string   // host:port the REGISTER came from (the flow to reach it)
	Transport string   // UDP, TCP, TLS, WS, WSS
	Updated   time.Time
}

// Param returns a Contact parameter's value (unquoted) and whether it is
// present.
func (b *Binding) Param(name string) (string, bool) {
	if b.Contact.Params == nil {
		return "", false
	}
	v, ok := b.Contact.Params.Get(name)
	return strings.Trim(v, `"`), ok
}

// Request is a REGISTER as the registrar sees it.
type Request struct {
	AOR       string
	Contacts  []*sip.ContactHeader // empty: a query
	Wildcard  bool                 // Contact: *
	Expires   *uint32              // Expires header
	CallID    string
	CSeq      uint32
	Path      []string
	Source    string
	Transport string
}

// Registry holds the bindings. It is safe for concurrent use.
type Registry struct {
	mu    sync.Mutex
	byAOR map[string][]*Binding
}

// New returns an empty registry.
func New() *Registry { return &Registry{byAOR: map[string][]*Binding{}} }

// AOR canonicalizes an address-of-record: sip:user@host, lower-case host,
// no port or parameters.
func AOR(u sip.Uri) string {
	return "sip:" + u.User + "@" + strings.ToLower(u.Host)
}

func bindingKey(c *sip.ContactHeader) string {
	if c.Params != nil {
		if inst, ok := c.Params.Get("+sip.instance"); ok {
			regID, _ := c.Params.Get("reg-id")
			return "instance:" + inst + ";" + regID
		}
	}
	u := c.Address
	return "uri:" + strings.ToLower(u.Scheme) + ":" + u.User + "@" + strings.ToLower(u.Host) + ":" + fmt.Sprint(u.Port)
}

func contactExpires(c *sip.ContactHeader, hdr *uint32) uint32 {
	if c.Params != nil {
		if v, ok := c.Params.Get("expires"); ok {
			var n uint32
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	if hdr != nil {
		return *hdr
	}
	return DefaultExpires
}

// Apply processes a REGISTER (RFC 3261 section 10.3, steps 6 to 8) and
// returns the AOR's bindings afterwards.
func (r *Registry) Apply(req Request, now time.Time) ([]Binding, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(req.AOR, now)
	cur := r.byAOR[req.AOR]
	if req.Wildcard {
		if len(req.Contacts) > 0 || req.Expires == nil || *req.Expires != 0 {
			return nil, ErrWildcard
		}
		for _, b := range cur {
			if b.CallID == req.CallID && req.CSeq <= b.CSeq {
				return nil, ErrOutOfOrder
			}
		}
		delete(r.byAOR, req.AOR)
		return nil, nil
	}
	// Check every contact first: a REGISTER applies whole or not at all.
	for _, c := range req.Contacts {
		exp := contactExpires(c, req.Expires)
		if exp != 0 && exp < MinExpires {
			return nil, &IntervalTooBriefError{Min: MinExpires}
		}
		key := bindingKey(c)
		for _, b := range cur {
			if b.Key == key && b.CallID == req.CallID && req.CSeq <= b.CSeq {
				return nil, ErrOutOfOrder
			}
		}
	}
	for _, c := range req.Contacts {
		exp := min(contactExpires(c, req.Expires), MaxExpires)
		key := bindingKey(c)
		idx := -1
		for i, b := range cur {
			if b.Key == key {
				idx = i
			}
		}
		if exp == 0 {
			if idx >= 0 {
				cur = append(cur[:idx], cur[idx+1:]...)
			}
			continue
		}
		stored := c.Clone()
		if stored.Params != nil {
			stored.Params.Remove("expires")
		}
		b := &Binding{AOR: req.AOR, Contact: stored, Key: key, Expires: now.Add(time.Duration(exp) * time.Second),
			CallID: req.CallID, CSeq: req.CSeq, Path: append([]string(nil), req.Path...), Source: req.Source,
			Transport: req.Transport, Updated: now}
		if idx >= 0 {
			cur[idx] = b
		} else {
			cur = append(cur, b)
		}
	}
	if len(cur) == 0 {
		delete(r.byAOR, req.AOR)
	} else {
		r.byAOR[req.AOR] = cur
	}
	return r.snapshot(req.AOR), nil
}

func (r *Registry) expire(aor string, now time.Time) {
	cur := r.byAOR[aor]
	kept := cur[:0]
	for _, b := range cur {
		if now.Before(b.Expires) {
			kept = append(kept, b)
		}
	}
	if len(kept) == 0 {
		delete(r.byAOR, aor)
	} else {
		r.byAOR[aor] = kept
	}
}

func (r *Registry) snapshot(aor string) []Binding {
	out := make([]Binding, 0, len(r.byAOR[aor]))
	for _, b := range r.byAOR[aor] {
		c := *b
		c.Contact = b.Contact.Clone()
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Updated.After(out[j].Updated) })
	return out
}

// Lookup returns the live bindings of an AOR, most recent first.
func (r *Registry) Lookup(aor string, now time.Time) []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(aor, now)
	return r.snapshot(aor)
}

// FindContact returns the live binding whose contact URI is uri (user and
// host:port), for requests inside a dialog whose target is a registered
// contact: the flow it registered from is the way to reach it.
func (r *Registry) FindContact(uri sip.Uri, now time.Time) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := "uri:" + strings.ToLower(uri.Scheme) + ":" + uri.User + "@" + strings.ToLower(uri.Host) + ":" + fmt.Sprint(uri.Port)
	for _, bs := range r.byAOR {
		for _, b := range bs {
			c := &sip.ContactHeader{Address: b.Contact.Address}
			if bindingKey(c) == want && now.Before(b.Expires) {
				cp := *b
				cp.Contact = b.Contact.Clone()
				return cp, true
			}
		}
	}
	return Binding{}, false
}

// Count returns the number of live bindings (for monitoring).
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, bs := range r.byAOR {
		n += len(bs)
	}
	return n
}
