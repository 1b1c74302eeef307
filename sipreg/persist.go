package sipreg

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Persistence: a Registry shared through a store.
//
// The registry stays the place every lookup is answered from (memory, no
// I/O on the REGISTER path). A Persister attached to it (Registry.Persist)
// does the rest beside it:
//
//   - write-behind: every change Apply makes is queued (the latest state of
//     each binding wins) and written in one batch every FlushEvery. A
//     removal is written as a tombstone (Data says removed, kept
//     TombstoneKeep) so that other nodes learn of it. What a crash can
//     lose: the changes of the last FlushEvery (20 ms by default) and of a
//     batch being written; their clients re-register at their next refresh
//     (RFC 3261 section 10.2.4), and until then a restarted node answers
//     480 for them.
//   - load: at start, every live binding of the store (a restarted node
//     routes to everyone registered before).
//   - change feed: every PollEvery, the bindings changed since the last
//     poll (less Overlap: a row's Updated is stamped a moment before its
//     transaction commits) are merged; this node's own writes are
//     recognised by their bytes and skipped without decoding: a node sees another's
//     registration within about FlushEvery + PollEvery.
//   - read-through: a Lookup that finds nothing asks the store for that
//     address at once (bounded: MaxReadThrough at a time, each address at
//     most once per FlushEvery), so a call right after a registration on
//     another node does not wait for the feed.
//   - reclaim: every ReclaimEvery, expired bindings and old tombstones are
//     deleted from the store (idempotent: any node may do it).
//
// Merging keeps, for each binding (address, owner, key), the version with
// the latest Updated of the node that took the REGISTER: a late batch
// cannot undo a newer refresh or a removal taken by another node (a node
// that sees the store hold an older version than its own writes its own
// again; removals are remembered for TombstoneKeep). The feed follows the
// store's own clock (Record.Updated); nodes' clocks need only agree well
// within a registration's lifetime (NTP).

// Record is a binding as a Store keeps it: opaque Data (this package's
// JSON), keyed by (AOR, Key).
type Record struct {
	AOR, Key string
	Expires  time.Time
	Data     []byte
	Updated  time.Time
}

// Store keeps the bindings of every node of a domain (package store
// implements it on SQLite and PostgreSQL: Contract C).
type Store interface {
	// PutBindings upserts records by (AOR, Key), stamping their Updated
	// (the store's clock: one clock for every node on PostgreSQL).
	PutBindings(ctx context.Context, recs []Record) error
	// Bindings returns the records of aor that expire after now.
	Bindings(ctx context.Context, aor string, now time.Time) ([]Record, error)
	// AllBindings returns every record that expires after now.
	AllBindings(ctx context.Context, now time.Time) ([]Record, error)
	// BindingsChangedSince returns the records updated after since,
	// expired or not, and the traces of deleted ones (Data nil).
	BindingsChangedSince(ctx context.Context, since time.Time) ([]Record, error)
	// ReclaimBindings deletes the records expired at now.
	ReclaimBindings(ctx context.Context, now time.Time) (int, error)
}

// MarkedFeed is a Store whose change feed leaves out this node's own
// writes (in the query, not after it: never one of the rows whose last
// write was this node's) and says how far it read: mark is
// the newest Updated after since of any node's row, zero if none. The
// feed advances on the mark as on the records, so its own rows, never
// returned, are not scanned again at the next poll.
type MarkedFeed interface {
	BindingsChangedSinceMark(ctx context.Context, since time.Time) (recs []Record, mark time.Time, err error)
}

// PersistConfig configures a Persister; zero values take the defaults.
type PersistConfig struct {
	Store        Store
	FlushEvery   time.Duration // write-behind batch window (20 ms)
	PollEvery    time.Duration // change feed period (250 ms)
	Overlap      time.Duration // the feed reads this far behind its last record (1 s)
	ReclaimEvery time.Duration // store clean-up period (1 min)
	// TombstoneKeep is how long a removal stays in the store for other
	// nodes to see (1 min; at least a few PollEvery).
	TombstoneKeep time.Duration
	// MaxPending bounds the changes waiting to be written (a store down
	// for long): over it, new changes are not persisted (2 x the
	// registry's MaxBindings).
	MaxPending int
	// MaxReadThrough bounds the store reads of Lookup misses in flight (4).
	MaxReadThrough int
	Now            func() time.Time // time.Now when nil
	Log            *slog.Logger
}

// Persister keeps a Registry and a Store in step (see above).
type Persister struct {
	reg *Registry
	cfg PersistConfig
	log *slog.Logger
	sem chan struct{} // read-throughs in flight

	mu      sync.Mutex
	pending map[string]Record    // AOR + "\x00" + Key -> latest change
	asked   map[string]time.Time // AOR -> last read-through
	dropped int                  // changes not persisted (pending full)
	tombs   map[string]Record    // AOR + "\x00" + Key -> recent removal (TombstoneKeep)

	fmu   sync.Mutex           // the feed's state (Run's goroutine, and Poll)
	since time.Time            // the feed's position (latest Updated seen)
	seen  map[string]time.Time // AOR + "\x00" + Key -> Updated merged, within Overlap
	// written: AOR + "\x00" + Key -> the Data this node wrote last (its
	// own rows coming back in the feed), kept like seen; empty with a
	// MarkedFeed, which never returns them.
	written map[string]writtenData
}

// Persist attaches a Persister to r: from now on Apply's changes are
// queued for the store. Call Load, then Run.
func (r *Registry) Persist(cfg PersistConfig) *Persister {
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 20 * time.Millisecond
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 250 * time.Millisecond
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = time.Second
	}
	if cfg.ReclaimEvery <= 0 {
		cfg.ReclaimEvery = time.Minute
	}
	if cfg.TombstoneKeep <= 0 {
		cfg.TombstoneKeep = time.Minute
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 2 * r.limits.MaxBindings
	}
	if cfg.MaxReadThrough <= 0 {
		cfg.MaxReadThrough = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Persister{reg: r, cfg: cfg, log: log.With("component", "sipreg"), sem: make(chan struct{}, cfg.MaxReadThrough),
		pending: map[string]Record{}, asked: map[string]time.Time{}, seen: map[string]time.Time{}, written: map[string]writtenData{},
		tombs: map[string]Record{}}
	r.mu.Lock()
	r.sync = p
	r.mu.Unlock()
	return p
}

// changed queues what Apply changed at one address (old to next) for the
// store. Called with r.mu held; only memory work.
func (r *Registry) changed(old, next []*Binding, now time.Time) {
	p := r.sync
	if p == nil {
		return
	}
	for _, b := range next {
		if !containsBinding(old, b) {
			p.queue(b, false, now)
		}
	}
	for _, b := range old {
		if !containsBinding(next, b) && find(next, b.Owner, b.Key) < 0 {
			p.queue(b, true, now)
		}
	}
}

func containsBinding(bs []*Binding, b *Binding) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// storeKey is the store's key of a binding: its owner (quoted, so that
// no owner and key pair spells another) and its key.
func storeKey(owner, key string) string { return strconv.Quote(owner) + " " + key }

func (p *Persister) queue(b *Binding, removed bool, now time.Time) {
	rec, err := encodeBinding(b, removed, now, p.cfg.TombstoneKeep)
	if err != nil {
		p.log.Error("binding not persisted: encoding", "aor", b.AOR, "err", err)
		return
	}
	k := rec.AOR + "\x00" + rec.Key
	p.mu.Lock()
	defer p.mu.Unlock()
	if removed {
		p.tombs[k] = rec
	} else {
		delete(p.tombs, k)
	}
	p.put(k, rec)
}

// storedBinding is a Binding as Record.Data holds it. Two encodings:
// JSON (version 1, what paysip wrote before; still read, never written)
// and a binary one (format 2, below), ~9 times cheaper to write
// (BenchmarkEncodeBinding: 0.7 us against 6 us): a
// registrar taking a new binding per REGISTER spent 3-4% of its CPU in
// encoding/json.
type storedBinding struct {
	V         int       `json:"v"`
	Contact   string    `json:"contact"`
	Key       string    `json:"key"`
	Owner     string    `json:"owner,omitempty"`
	Expires   time.Time `json:"expires"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	Path      []string  `json:"path,omitempty"`
	Source    string    `json:"source,omitempty"`
	Transport string    `json:"transport,omitempty"`
	Updated   time.Time `json:"updated"`
	Removed   bool      `json:"removed,omitempty"`
}

const storedVersion = 1

// Format 2: the byte storedFormat2, a flags byte (bit 0: removed), the
// CSeq (uvarint), Expires and Updated (each: unix seconds as a varint,
// nanoseconds as a uvarint below 1e9), then Contact, Key, Owner, CallID,
// Source, Transport (each a uvarint length and its bytes), the number of
// Path entries (uvarint) and each (length and bytes); nothing after. A
// JSON record starts with '{', never with this byte.
const storedFormat2 = 0x02

func (sb *storedBinding) appendBinary(b []byte) []byte {
	b = append(b, storedFormat2, 0)
	if sb.Removed {
		b[len(b)-1] = 1
	}
	b = binary.AppendUvarint(b, uint64(sb.CSeq))
	for _, t := range []time.Time{sb.Expires, sb.Updated} {
		b = binary.AppendVarint(b, t.Unix())
		b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	for _, s := range []string{sb.Contact, sb.Key, sb.Owner, sb.CallID, sb.Source, sb.Transport} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(sb.Path)))
	for _, s := range sb.Path {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// readBinary reads format 2 (data[0] is storedFormat2).
func (sb *storedBinding) readBinary(data []byte) error {
	d := data[1:]
	bad := func(what string) error { return fmt.Errorf("%w: format 2: %s", errStored, what) }
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(d)
		if n <= 0 {
			return 0, false
		}
		d = d[n:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(d)) {
			return "", false
		}
		s := string(d[:n])
		d = d[n:]
		return s, true
	}
	if len(d) == 0 || d[0] > 1 {
		return bad("flags")
	}
	sb.V, sb.Removed = storedVersion, d[0] == 1
	d = d[1:]
	cseq, ok := uv()
	if !ok || cseq > 1<<32-1 {
		return bad("cseq")
	}
	sb.CSeq = uint32(cseq)
	for _, t := range []*time.Time{&sb.Expires, &sb.Updated} {
		sec, n := binary.Varint(d)
		if n <= 0 {
			return bad("time")
		}
		d = d[n:]
		nsec, ok := uv()
		if !ok || nsec >= 1e9 {
			return bad("time")
		}
		*t = time.Unix(sec, int64(nsec)).UTC()
	}
	for _, s := range []*string{&sb.Contact, &sb.Key, &sb.Owner, &sb.CallID, &sb.Source, &sb.Transport} {
		if *s, ok = str(); !ok {
			return bad("string")
		}
	}
	n, ok := uv()
	if !ok || n > uint64(len(d)) { // each entry takes a byte at least
		return bad("path")
	}
	for range n {
		p, ok := str()
		if !ok {
			return bad("path")
		}
		sb.Path = append(sb.Path, p)
	}
	if len(d) != 0 {
		return bad("trailing bytes")
	}
	return nil
}

// read decodes Record.Data in either encoding.
func (sb *storedBinding) read(data []byte) error {
	if len(data) > 0 && data[0] == storedFormat2 {
		return sb.readBinary(data)
	}
	if err := json.Unmarshal(data, sb); err != nil {
		return fmt.Errorf("%w: %v", errStored, err)
	}
	if sb.V != storedVersion {
		return fmt.Errorf("%w: version %d", errStored, sb.V)
	}
	return nil
}

// encodeBinding makes b's Record; a removal (at now) is a tombstone kept
// for keep.
func encodeBinding(b *Binding, removed bool, now time.Time, keep time.Duration) (Record, error) {
	sb, rec := storedOf(b, removed, now, keep)
	rec.Data = sb.appendBinary(make([]byte, 0, 32+len(sb.Contact)+len(sb.Key)+len(sb.Owner)+len(sb.CallID)+len(sb.Source)+len(sb.Transport)))
	return rec, nil
}

// storedOf is b as stored, and its Record without Data; a removal (at
// now) is a tombstone kept for keep.
func storedOf(b *Binding, removed bool, now time.Time, keep time.Duration) (storedBinding, Record) {
	sb := storedBinding{V: storedVersion, Contact: b.Contact.Value(), Key: b.Key, Owner: b.Owner, Expires: b.Expires.UTC(),
		CallID: b.CallID, CSeq: b.CSeq, Path: b.Path, Source: b.Source, Transport: b.Transport, Updated: b.Updated.UTC()}
	rec := Record{AOR: b.AOR, Key: storeKey(b.Owner, b.Key), Expires: sb.Expires, Updated: sb.Updated}
	if removed {
		sb.Removed, sb.Updated = true, now.UTC()
		rec.Updated, rec.Expires = sb.Updated, sb.Updated.Add(keep)
	}
	return sb, rec
}

// errStored: a record that is not a binding of this package.
var errStored = errors.New("sipreg: stored binding")

// decodeBinding reads a Record back (either encoding); removed reports a
// tombstone.
func decodeBinding(rec Record) (b *Binding, removed bool, err error) {
	var sb storedBinding
	if err := sb.read(rec.Data); err != nil {
		return nil, false, err
	}
	c := &sip.ContactHeader{}
	if c.DisplayName, err = sip.ParseAddressValue(sb.Contact, &c.Address, &c.Params); err != nil {
		return nil, false, fmt.Errorf("%w: contact: %v", errStored, err)
	}
	if c.Address.Wildcard || !validHost(c.Address.Host) || !strings.HasPrefix(rec.AOR, "sip:") {
		return nil, false, fmt.Errorf("%w: contact %q of %q", errStored, sb.Contact, rec.AOR)
	}
	if c.Params == nil {
		c.Params = sip.NewParams()
	}
	if rec.Key != storeKey(sb.Owner, sb.Key) {
		return nil, false, fmt.Errorf("%w: key %q is not the binding's", errStored, rec.Key)
	}
	return &Binding{AOR: rec.AOR, Contact: c, Key: sb.Key, Owner: sb.Owner, Expires: sb.Expires, CallID: sb.CallID, CSeq: sb.CSeq,
		Path: sb.Path, Source: sb.Source, Transport: sb.Transport, Updated: sb.Updated}, sb.Removed, nil
}

// validHost: a host name or IP literal (RFC 3261 section 25.1 hostport).
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_:[]", c)) {
			return false
		}
	}
	return true
}

// Load merges every live binding of the store into the registry (at
// start: a restarted node routes to everyone registered before), and
// starts the change feed from there.
func (p *Persister) Load(ctx context.Context) error {
	now := p.cfg.Now()
	recs, err := p.cfg.Store.AllBindings(ctx, now)
	if err != nil {
		return fmt.Errorf("loading bindings: %w", err)
	}
	p.fmu.Lock()
	defer p.fmu.Unlock()
	n := p.merge(recs, now)
	p.since = now.Add(-p.cfg.Overlap)
	p.log.Info("bindings loaded from the store", "bindings", n, "records", len(recs))
	return nil
}

// merge applies store records to the registry: a newer version of a
// binding (by the Updated of the node that wrote it) replaces the one
// held, a tombstone or an expired record removes it. It returns how many
// bindings changed. Merged changes are not queued back to the store,
// except to repair it: a record older than what this node holds (a late
// batch of another node overwrote a newer row) makes this node write its
// newer version again, so the store converges on the latest.
func (p *Persister) merge(recs []Record, now time.Time) int {
	r := p.reg
	changed, full := 0, 0
	r.mu.Lock()
	defer r.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rec := range recs {
		if rec.Data == nil {
			changed += p.mergeDeleted(rec)
			continue
		}
		b, removed, err := decodeBinding(rec)
		if err != nil {
			p.log.Warn("stored binding skipped", "aor", rec.AOR, "key", rec.Key, "err", err)
			continue
		}
		k := rec.AOR + "\x00" + rec.Key
		cur := r.byAOR[b.AOR]
		idx := find(cur, b.Owner, b.Key)
		if idx >= 0 && !cur[idx].Updated.Before(b.Updated) {
			if cur[idx].Updated.After(b.Updated) {
				p.repair(k, cur[idx], now)
			}
			continue // ours is as new
		}
		if t, ok := p.tombs[k]; ok && !removedAt(t).Before(b.Updated) {
			if removedAt(t).After(b.Updated) {
				p.put(k, t)
			}
			continue // removed since
		}
		if removed || !now.Before(b.Expires) {
			if removed {
				p.tombs[k] = rec
			}
			if idx >= 0 {
				next := append(append([]*Binding(nil), cur[:idx]...), cur[idx+1:]...)
				r.set(b.AOR, cur, next)
				changed++
			}
			continue
		}
		if idx < 0 && r.count >= r.limits.MaxBindings {
			full++
			continue
		}
		next := append([]*Binding(nil), cur...)
		if idx >= 0 {
			next[idx] = b
		} else {
			next = append(next, b)
		}
		r.set(b.AOR, cur, next)
		changed++
	}
	if full > 0 {
		p.log.Warn("stored bindings not taken: registrar full", "skipped", full, "max", r.limits.MaxBindings)
	}
	return changed
}

// removedAt is when a tombstone's binding was removed (by the clock of
// the node that removed it).
func removedAt(rec Record) time.Time {
	var sb storedBinding
	sb.read(rec.Data)
	return sb.Updated
}

// repair queues b again after the store was seen holding an older
// version of it (with p.mu held).
func (p *Persister) repair(k string, b *Binding, now time.Time) {
	if _, queued := p.pending[k]; queued {
		return
	}
	if rec, err := encodeBinding(b, false, now, p.cfg.TombstoneKeep); err == nil {
		p.put(k, rec)
	}
}

// put queues rec under k, within MaxPending (with p.mu held).
func (p *Persister) put(k string, rec Record) {
	if _, ok := p.pending[k]; !ok && len(p.pending) >= p.cfg.MaxPending {
		p.dropped++
		return
	}
	p.pending[k] = rec
}

// mergeDeleted applies a row the store deleted (Store.DeleteBinding; this
// package writes tombstones instead): the binding goes.
func (p *Persister) mergeDeleted(rec Record) int {
	owner, rest, err := splitStoreKey(rec.Key)
	if err != nil {
		return 0
	}
	r := p.reg
	cur := r.byAOR[rec.AOR]
	idx := find(cur, owner, rest)
	if idx < 0 {
		return 0
	}
	r.set(rec.AOR, cur, append(append([]*Binding(nil), cur[:idx]...), cur[idx+1:]...))
	return 1
}

func splitStoreKey(k string) (owner, key string, err error) {
	q, err := strconv.QuotedPrefix(k)
	if err != nil || len(k) <= len(q) || k[len(q)] != ' ' {
		return "", "", fmt.Errorf("%w: key %q", errStored, k)
	}
	owner, err = strconv.Unquote(q)
	return owner, k[len(q)+1:], err
}

// readThrough asks the store for aor after a Lookup miss and merges what
// it finds; it reports whether anything was merged.
func (p *Persister) readThrough(aor string, now time.Time) bool {
	p.mu.Lock()
	if t, ok := p.asked[aor]; ok && now.Sub(t) < p.cfg.FlushEvery && !now.Before(t) {
		p.mu.Unlock()
		return false
	}
	if len(p.asked) >= 10_000 {
		clear(p.asked)
	}
	p.asked[aor] = now
	p.mu.Unlock()
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	default:
		return false // enough reads in flight: the feed will bring it
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	recs, err := p.cfg.Store.Bindings(ctx, aor, now)
	if err != nil {
		p.log.Warn("store read after a lookup miss", "aor", aor, "err", err)
		return false
	}
	return len(recs) > 0 && p.merge(recs, now) > 0
}

type writtenData struct {
	data []byte
	at   time.Time
}

// Flush writes the queued changes now, in one batch. On failure they stay
// queued (unless newer ones replaced them) for the next Flush.
func (p *Persister) Flush(ctx context.Context) error {
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.mu.Unlock()
		return nil
	}
	batch := make([]Record, 0, len(p.pending))
	for _, rec := range p.pending {
		batch = append(batch, rec)
	}
	clear(p.pending)
	dropped := p.dropped
	p.dropped = 0
	p.mu.Unlock()
	if dropped > 0 {
		p.log.Warn("binding changes not persisted: the store is behind", "dropped", dropped, "max_pending", p.cfg.MaxPending)
	}
	err := p.cfg.Store.PutBindings(ctx, batch)
	if _, marked := p.cfg.Store.(MarkedFeed); err == nil && marked {
		// The feed leaves out this node's rows in the query: nothing to
		// recognise them by (a registrar taking 10,000 new bindings a
		// second spent ~2% of its CPU keeping and sweeping this map).
		return nil
	}
	if err == nil {
		at := p.cfg.Now()
		p.fmu.Lock()
		for _, rec := range batch {
			p.written[rec.AOR+"\x00"+rec.Key] = writtenData{rec.Data, at}
		}
		p.fmu.Unlock()
		return nil
	}
	p.mu.Lock()
	for _, rec := range batch {
		k := rec.AOR + "\x00" + rec.Key
		if _, newer := p.pending[k]; !newer {
			p.pending[k] = rec
		}
	}
	p.mu.Unlock()
	return fmt.Errorf("writing %d binding changes: %w", len(batch), err)
}

// Pending returns how many changes wait to be written.
func (p *Persister) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Poll merges the bindings other nodes changed since the last poll and
// returns how many bindings changed here.
func (p *Persister) Poll(ctx context.Context) (int, error) {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	from := p.since.Add(-p.cfg.Overlap)
	var recs []Record
	var mark time.Time
	var err error
	if mf, ok := p.cfg.Store.(MarkedFeed); ok {
		recs, mark, err = mf.BindingsChangedSinceMark(ctx, from)
	} else {
		recs, err = p.cfg.Store.BindingsChangedSince(ctx, from)
	}
	if err != nil {
		return 0, fmt.Errorf("binding change feed: %w", err)
	}
	now := p.cfg.Now()
	if mark.After(p.since) {
		// As for a record (below): never past now.
		p.since = mark
		if p.since.After(now) {
			p.since = now
		}
	}
	fresh := recs[:0:0]
	for _, rec := range recs {
		k := rec.AOR + "\x00" + rec.Key
		if u, ok := p.seen[k]; ok && u.Equal(rec.Updated) {
			continue // merged at an earlier poll (the overlap reads it again)
		}
		p.seen[k] = rec.Updated
		// The feed has read this far, our own writes included: a node
		// that only read past others' records read every binding it had
		// written since it started at each poll (a registrar alone,
		// taking 10,000 new bindings a second, spent 38% of its CPU
		// reading them back).
		if rec.Updated.After(p.since) {
			// A node whose clock runs ahead must not carry the feed
			// past records the others are still writing.
			p.since = rec.Updated
			if p.since.After(now) {
				p.since = now
			}
		}
		if w, ok := p.written[k]; ok && bytes.Equal(w.data, rec.Data) {
			continue // our own write
		}
		fresh = append(fresh, rec)
	}
	for k, u := range p.seen {
		if u.Before(from) {
			delete(p.seen, k)
		}
	}
	for k, w := range p.written {
		if now.Sub(w.at) > 2*(p.cfg.Overlap+p.cfg.PollEvery) {
			delete(p.written, k)
		}
	}
	p.mu.Lock()
	for k, t := range p.tombs {
		if !now.Before(t.Expires) {
			delete(p.tombs, k)
		}
	}
	p.mu.Unlock()
	return p.merge(fresh, now), nil
}

// Run writes behind, follows the change feed and reclaims the store until
// ctx ends; then it writes what is still queued (5 s at most).
func (p *Persister) Run(ctx context.Context) error {
	flush := time.NewTicker(p.cfg.FlushEvery)
	defer flush.Stop()
	poll := time.NewTicker(p.cfg.PollEvery)
	defer poll.Stop()
	reclaim := time.NewTicker(p.cfg.ReclaimEvery)
	defer reclaim.Stop()
	var warned time.Time
	warn := func(msg string, err error) {
		if now := time.Now(); now.Sub(warned) > 10*time.Second {
			warned = now
			p.log.Warn(msg, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := p.Flush(final)
			cancel()
			return err
		case <-flush.C:
			if err := p.Flush(ctx); err != nil && ctx.Err() == nil {
				warn("binding store write failed; retrying", err)
			}
		case <-poll.C:
			if _, err := p.Poll(ctx); err != nil && ctx.Err() == nil {
				warn("binding change feed failed; retrying", err)
			}
		case <-reclaim.C:
			n, err := p.cfg.Store.ReclaimBindings(ctx, p.cfg.Now())
			if err != nil && ctx.Err() == nil {
				warn("reclaiming expired bindings failed", err)
			} else if n > 0 {
				p.log.Debug("expired bindings reclaimed from the store", "count", n)
			}
		}
	}
}
