package sipserver

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpGuard wraps the SIP UDP socket. On the way in it drops datagrams
// over the message size and sources over their input rate, before sipgo
// parses them or makes a transaction. On the way out it keeps the server
// from being a reflector: a UDP source address can be spoofed, so until a
// source has proved it receives what we send to it, the responses sent to
// it never total more than UDPReplyFactor times the bytes received from it
// (the rule QUIC applies before address validation, RFC 9000 section 8.1,
// with a factor of 3). A response that does not fit is dropped; the
// client's retransmission (RFC 3261 section 17.1.2.2) earns the credit.
//
// Why a factor of 2 and not 1: a digest challenge cannot be smaller than
// a real client's first REGISTER. Measured here: sipp's REGISTER is 312
// bytes and our 401 to it about 420 (the nonce, the To tag, Via's
// received/rport), and sipp does not retransmit a REGISTER: with a factor
// of 1 it could never register over UDP. A factor of 2 still takes the
// value out of reflecting through us (a request of the most useful size
// for it, ~160 bytes, earns no 401 at all).
//
// A source proves its address by answering a digest challenge sent to
// that address with the challenge's nonce (verifyNonce): a spoofer never
// sees the nonce. Requests the server originates (to registered contacts,
// whose registration was authenticated) are not limited here.
type udpGuard struct {
	net.PacketConn
	lim   Limits
	log   *slog.Logger
	input *sourceLimiter
	// requests limits request datagrams per source, at a multiple of
	// the request rate: the transactions one source can make sipgo hold.
	requests *sourceLimiter
	busy     func() bool // the server holds all the transactions it may
	now      func() time.Time
	// fast handles a datagram in the reader, without sipgo, and reports
	// whether it did (the stateless REGISTER path, fastpath.go; in-dialog
	// requests and their responses, proxyfast.go).
	fast func(data []byte, from *net.UDPAddr) bool

	mu sync.Mutex
	// announced are the sources whose address sipgo's UDP transport has
	// learnt (it sends to an address along the socket it last heard it
	// on): a source heard only on the fast path is announced to it with
	// an empty keep-alive.
	announced *lru[netip.AddrPort, struct{}]
	credit    *lru[netip.AddrPort, *udpSource]
	nonces    *lru[string, netip.AddrPort] // challenges sent over UDP, pending
	dropped   atomic.Int64
	warned    atomic.Int64
}

type udpSource struct {
	credit        int
	verifiedUntil time.Time
}

// maxUDPCredit caps the bytes a source may have earned and not spent.
const maxUDPCredit = 64 << 10

// udpVerifiedFor is how long a proved address stays proved.
const udpVerifiedFor = 30 * time.Minute

func newUDPGuard(c net.PacketConn, lim Limits, input *sourceLimiter, log *slog.Logger, now func() time.Time) *udpGuard {
	return &udpGuard{PacketConn: c, lim: lim, log: log, input: input, now: now,
		credit: newLRU[netip.AddrPort, *udpSource](lim.MaxSources), nonces: newLRU[string, netip.AddrPort](lim.MaxSources),
		announced: newLRU[netip.AddrPort, struct{}](lim.MaxSources)}
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// ReadFrom returns the next datagram worth parsing. Only closing the
// socket ends it: sipgo stops serving UDP on any read error, so a passing
// one (ENOBUFS, an ICMP error reported on the socket) is retried.
func (g *udpGuard) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.PacketConn.ReadFrom(p)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return n, addr, err
			}
			if now := time.Now().Unix(); g.warned.Swap(now) != now {
				g.log.Warn("UDP read failed; retrying", "err", err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ap := addrPort(addr)
		if n > g.lim.MaxMessageSize {
			g.drop("datagram over the message size", ap, p[:min(n, 200)], "size", n, "max", g.lim.MaxMessageSize)
			continue
		}
		if !g.lim.exempt(ap.Addr()) {
			if ok, _ := g.input.take(ap.Addr(), float64(n), g.now()); !ok {
				g.drop("datagram over the source's input rate", ap, nil, "size", n, "rate", g.lim.InputRate)
				continue
			}
		}
		if isRequest(p[:n]) {
			if g.busy != nil && g.busy() {
				g.drop("request dropped: transaction limit reached", ap, nil, "size", n)
				continue
			}
			if !g.lim.exempt(ap.Addr()) {
				if ok, _ := g.requests.take(ap.Addr(), 1, g.now()); !ok {
					g.drop("request dropped: far over the source's request rate", ap, nil, "size", n)
					continue
				}
			}
		}
		g.mu.Lock()
		s, ok := g.credit.get(ap)
		if !ok {
			s = &udpSource{}
			g.credit.put(ap, s)
		}
		s.credit = min(maxUDPCredit, s.credit+n*max(1, g.lim.UDPReplyFactor))
		_, known := g.announced.get(ap)
		if !known {
			g.announced.put(ap, struct{}{})
		}
		g.mu.Unlock()
		if u, ok := addr.(*net.UDPAddr); ok && g.fast != nil && g.fast(p[:n], u) {
			if known {
				continue
			}
			// RFC 5626 section 4.4.1's keep-alive: sipgo learns the
			// address and ignores the datagram.
			return copy(p, "\r\n\r\n"), addr, nil
		}
		return n, addr, nil
	}
}

// WriteTo sends a datagram, unless it is a response to a source that has
// not proved its address and it would exceed what the source sent.
func (g *udpGuard) WriteTo(b []byte, addr net.Addr) (int, error) {
	if g.lim.UDPReplyFactor > 0 && bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		ap := addrPort(addr)
		if !g.lim.exempt(ap.Addr()) && !g.spend(ap, len(b)) {
			end := bytes.IndexByte(b, '\r')
			if end < 0 {
				end = min(len(b), 40)
			}
			g.drop("response over the unproved source's budget; dropped (no reflection)", ap, b[:end], "size", len(b), "factor", g.lim.UDPReplyFactor)
			return len(b), nil
		}
	}
	return g.PacketConn.WriteTo(b, addr)
}

func (g *udpGuard) spend(ap netip.AddrPort, n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.credit.get(ap)
	if !ok {
		return false
	}
	if g.now().Before(s.verifiedUntil) {
		return true
	}
	if s.credit < n {
		return false
	}
	s.credit -= n
	return true
}

// challenged records a nonce sent to a UDP source in a challenge.
func (g *udpGuard) challenged(nonce string, src string) {
	ap, err := netip.ParseAddrPort(src)
	if err != nil || nonce == "" {
		return
	}
	g.mu.Lock()
	g.nonces.put(nonce, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	g.mu.Unlock()
}

// verifyNonce marks src proved when it authenticated with a nonce that was
// sent to it.
func (g *udpGuard) verifyNonce(nonce string, src string) bool {
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	g.mu.Lock()
	defer g.mu.Unlock()
	if to, ok := g.nonces.get(nonce); !ok || to != ap {
		return false
	}
	s, ok := g.credit.get(ap)
	if !ok {
		s = &udpSource{}
		g.credit.put(ap, s)
	}
	s.verifiedUntil = g.now().Add(udpVerifiedFor)
	return true
}

// drop logs a dropped datagram at warn, at most once a second, quoting at
// most 200 bytes of it.
func (g *udpGuard) drop(msg string, from netip.AddrPort, data []byte, attrs ...any) {
	n := g.dropped.Add(1)
	if now := time.Now().Unix(); g.warned.Swap(now) != now {
		attrs = append(attrs, "from", from.String(), "dropped_so_far", n)
		if data != nil {
			attrs = append(attrs, "data", quote200(data))
		}
		g.log.Warn(msg, attrs...)
	}
}

// lru is a map of at most max entries that forgets the least recently
// used first. Not safe for concurrent use.
type lru[K comparable, V any] struct {
	max  int
	m    map[K]*lruEntry[K, V]
	head lruEntry[K, V] // sentinel of a circular list, most recent after it
}

type lruEntry[K comparable, V any] struct {
	k          K
	v          V
	prev, next *lruEntry[K, V]
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	l := &lru[K, V]{max: max, m: map[K]*lruEntry[K, V]{}}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

func (l *lru[K, V]) unlink(e *lruEntry[K, V]) { e.prev.next, e.next.prev = e.next, e.prev }

func (l *lru[K, V]) front(e *lruEntry[K, V]) {
	e.prev, e.next = &l.head, l.head.next
	l.head.next.prev = e
	l.head.next = e
}

func (l *lru[K, V]) get(k K) (V, bool) {
	e, ok := l.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	l.unlink(e)
	l.front(e)
	return e.v, true
}

func (l *lru[K, V]) put(k K, v V) {
	if e, ok := l.m[k]; ok {
		e.v = v
		l.unlink(e)
		l.front(e)
		return
	}
	if len(l.m) >= l.max {
		old := l.head.prev
		l.unlink(old)
		delete(l.m, old.k)
	}
	e := &lruEntry[K, V]{k: k, v: v}
	l.m[k] = e
	l.front(e)
}

func (l *lru[K, V]) len() int { return len(l.m) }

// proved reports whether the UDP source src has proved its address.
func (g *udpGuard) proved(src string) bool {
	if g == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if g.lim.exempt(ap.Addr()) {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.credit.get(ap)
	return ok && g.now().Before(s.verifiedUntil)
}

// isRequest reports whether a datagram is a new SIP request: not a
// response, a keep-alive, an ACK or a CANCEL (which belong to a
// transaction or dialog already held).
func isRequest(b []byte) bool {
	if len(b) < 8 || b[0] < 'A' || b[0] > 'Z' {
		return false
	}
	return !bytes.HasPrefix(b, []byte("SIP/2.0 ")) && !bytes.HasPrefix(b, []byte("ACK ")) && !bytes.HasPrefix(b, []byte("CANCEL "))
}
