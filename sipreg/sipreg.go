// Package sipreg is the registrar's location service (RFC 3261 section
// 10.3): bindings of contacts to addresses-of-record, with expiry,
// refresh, removal, wildcard un-registration, Call-ID/CSeq ordering, the
// Path a registration came through (RFC 3327) and the instance id that
// browser user agents look for (RFC 5626 +sip.instance, reg-id).
//
// Bindings belong to the account that registered them (Binding.Owner): an
// address shared by many accounts (the directory) keeps each account's
// bindings apart, and one account can neither replace nor remove
// another's. The registry is bounded (Limits): contacts per owner of an
// address, and bindings in total. Expired bindings are removed by Sweep.
//
// It is pure: no sockets, and time is passed in. Package sipserver runs it
// (and drives Sweep from a ticker).
package sipreg

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// Default limits (Limits' zero values).
const (
	DefaultMaxContacts = 10
	DefaultMaxBindings = 100_000
)

// Errors of Apply.
var (
	ErrWildcard   = errors.New("wildcard Contact needs Expires: 0 and no other contact") // 400
	ErrOutOfOrder = errors.New("CSeq not above the one of this Call-ID")                 // 500
	// ErrTooManyContacts: the owner has MaxContacts bindings at this
	// address already (403: RFC 3261 section 10.3 lets a registrar refuse).
	ErrTooManyContacts = errors.New("too many contacts for this address")
	// ErrFull: the registry holds MaxBindings bindings (503).
	ErrFull = errors.New("registrar full")
)

// Limits bound what the outside can make the registry hold. Zero values
// mean the defaults.
type Limits struct {
	// MaxContacts is the number of bindings one owner may hold at one
	// address (DefaultMaxContacts).
	MaxContacts int
	// MaxBindings is the number of bindings in total (DefaultMaxBindings).
	MaxBindings int
}

func (l Limits) withDefaults() Limits {
	if l.MaxContacts <= 0 {
		l.MaxContacts = DefaultMaxContacts
	}
	if l.MaxBindings <= 0 {
		l.MaxBindings = DefaultMaxBindings
	}
	return l
}

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
	Owner     string             // the account that registered it ("" without authentication)
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
	Owner     string               // the authenticated account ("" without authentication)
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
	mu     sync.Mutex
	limits Limits
	byAOR  map[string][]*Binding
	count  int // bindings held
	peak   int // most AORs held since the map was last rebuilt

	sync *Persister // nil: memory only (persist.go)
}

// New returns an empty registry with the given limits (zero: defaults).
func New(l Limits) *Registry {
	return &Registry{limits: l.withDefaults(), byAOR: map[string][]*Binding{}}
}

// Limits returns the registry's limits (defaults filled in).
func (r *Registry) Limits() Limits { return r.limits }

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
	return "uri:" + strings.ToLower(u.Scheme) + ":" + u.User + "@" + strings.ToLower(u.Host) + ":" + strconv.Itoa(u.Port)
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
// returns the bindings of the AOR afterwards that belong to the request's
// owner. A wildcard removes only the owner's bindings; a contact replaces
// only a binding of the same owner.
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
			if b.Owner == req.Owner && b.CallID == req.CallID && req.CSeq <= b.CSeq {
				return nil, ErrOutOfOrder
			}
		}
		kept := make([]*Binding, 0, len(cur))
		for _, b := range cur {
			if b.Owner != req.Owner {
				kept = append(kept, b)
			}
		}
		r.set(req.AOR, cur, kept)
		r.changed(cur, kept, now)
		return nil, nil
	}
	// Check every contact first: a REGISTER applies whole or not at all.
	owned, added := 0, 0
	for _, b := range cur {
		if b.Owner == req.Owner {
			owned++
		}
	}
	seen := map[string]bool{}
	keys := make([]string, len(req.Contacts))
	for i, c := range req.Contacts {
		exp := contactExpires(c, req.Expires)
		if exp != 0 && exp < MinExpires {
			return nil, &IntervalTooBriefError{Min: MinExpires}
		}
		key := bindingKey(c)
		keys[i] = key
		idx := find(cur, req.Owner, key)
		if idx >= 0 && cur[idx].CallID == req.CallID && req.CSeq <= cur[idx].CSeq {
			return nil, ErrOutOfOrder
		}
		if exp != 0 && idx < 0 && !seen[key] {
			added++
		}
		seen[key] = true
	}
	if added > 0 && owned+added > r.limits.MaxContacts {
		return nil, ErrTooManyContacts
	}
	if added > 0 && r.count+added > r.limits.MaxBindings {
		return nil, ErrFull
	}
	next := append([]*Binding(nil), cur...)
	for i, c := range req.Contacts {
		exp := min(contactExpires(c, req.Expires), MaxExpires)
		key := keys[i]
		idx := find(next, req.Owner, key)
		if exp == 0 {
			if idx >= 0 {
				next = append(next[:idx], next[idx+1:]...)
			}
			continue
		}
		stored := c.Clone()
		if stored.Params != nil {
			stored.Params.Remove("expires")
		}
		b := &Binding{AOR: req.AOR, Contact: stored, Key: key, Owner: req.Owner, Expires: now.Add(time.Duration(exp) * time.Second),
			CallID: req.CallID, CSeq: req.CSeq, Path: append([]string(nil), req.Path...), Source: req.Source,
			Transport: req.Transport, Updated: now}
		if idx >= 0 {
			next[idx] = b
		} else {
			next = append(next, b)
		}
	}
	r.set(req.AOR, cur, next)
	r.changed(cur, next, now)
	return r.snapshot(req.AOR, req.Owner, true), nil
}

// find returns the index of owner's binding with key in bs, or -1.
func find(bs []*Binding, owner, key string) int {
	for i, b := range bs {
		if b.Owner == owner && b.Key == key {
			return i
		}
	}
	return -1
}

// set replaces the bindings of aor (old by next), keeping the count.
func (r *Registry) set(aor string, old, next []*Binding) {
	r.count += len(next) - len(old)
	if len(next) == 0 {
		delete(r.byAOR, aor)
		return
	}
	r.byAOR[aor] = next
	r.peak = max(r.peak, len(r.byAOR))
}

func (r *Registry) expire(aor string, now time.Time) {
	cur := r.byAOR[aor]
	live := 0
	for _, b := range cur {
		if now.Before(b.Expires) {
			live++
		}
	}
	if live == len(cur) {
		return
	}
	kept := make([]*Binding, 0, live)
	for _, b := range cur {
		if now.Before(b.Expires) {
			kept = append(kept, b)
		}
	}
	r.set(aor, cur, kept)
}

// Sweep removes every expired binding and every address left without
// bindings, and returns how many bindings it removed. Lookups expire the
// bindings they touch; Sweep reclaims the rest (an address nobody looks up
// again). When the registry has shrunk to a quarter of its peak, its map
// is rebuilt: Go maps do not give back their buckets.
func (r *Registry) Sweep(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := r.count
	for aor, cur := range r.byAOR {
		for _, b := range cur {
			if !now.Before(b.Expires) {
				r.expire(aor, now)
				break
			}
		}
	}
	if r.peak > 1024 && len(r.byAOR) < r.peak/4 {
		m := make(map[string][]*Binding, len(r.byAOR))
		for k, v := range r.byAOR {
			m[k] = v
		}
		r.byAOR, r.peak = m, len(m)
	}
	return before - r.count
}

// snapshot copies the bindings of aor (only owner's when mine), most
// recent first.
func (r *Registry) snapshot(aor, owner string, mine bool) []Binding {
	out := make([]Binding, 0, len(r.byAOR[aor]))
	for _, b := range r.byAOR[aor] {
		if mine && b.Owner != owner {
			continue
		}
		c := *b
		c.Contact = b.Contact.Clone()
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b Binding) int { return b.Updated.Compare(a.Updated) })
	return out
}

// Lookup returns the live bindings of an AOR, most recent first.
// With a Persister, a miss asks the store (another node may have taken
// the registration since the last change feed poll).
func (r *Registry) Lookup(aor string, now time.Time) []Binding {
	r.mu.Lock()
	r.expire(aor, now)
	out := r.snapshot(aor, "", false)
	r.mu.Unlock()
	if len(out) == 0 && r.sync != nil && r.sync.readThrough(aor, now) {
		r.mu.Lock()
		out = r.snapshot(aor, "", false)
		r.mu.Unlock()
	}
	return out
}

// FindContact is FindContactIn over every address: for requests the
// server makes itself to a contact it was given.
func (r *Registry) FindContact(uri sip.Uri, now time.Time) (Binding, bool) {
	return r.FindContactIn(uri, nil, now)
}

// FindContactIn returns the live binding of one of aors whose contact URI
// is uri (user and host:port), for requests inside a dialog whose target
// is a registered contact: the flow it registered from is the way to reach
// it. Only the dialog's own addresses are searched (the AORs of its From
// and To), so that nobody can catch another's in-dialog requests by
// registering the same contact URI at an address of their own. With aors
// nil, every address is searched (requests the server makes itself).
func (r *Registry) FindContactIn(uri sip.Uri, aors []string, now time.Time) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := "uri:" + strings.ToLower(uri.Scheme) + ":" + uri.User + "@" + strings.ToLower(uri.Host) + ":" + strconv.Itoa(uri.Port)
	if aors == nil {
		for aor := range r.byAOR {
			aors = append(aors, aor)
		}
	}
	var best *Binding
	for _, aor := range aors {
		for _, b := range r.byAOR[aor] {
			c := &sip.ContactHeader{Address: b.Contact.Address}
			if bindingKey(c) == want && now.Before(b.Expires) && (best == nil || b.Updated.After(best.Updated)) {
				best = b
			}
		}
	}
	if best == nil {
		return Binding{}, false
	}
	cp := *best
	cp.Contact = best.Contact.Clone()
	return cp, true
}

// Count returns the number of bindings held, live or expired but not yet
// swept (for monitoring and limits).
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// AORs returns the number of addresses with bindings held.
func (r *Registry) AORs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byAOR)
}
