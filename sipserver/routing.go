package sipserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Forwarding limits.
const (
	// DefaultMaxBranches bounds the branches one request is forked to
	// (Config.MaxBranches).
	DefaultMaxBranches = 10
	// maxForwardsCap is the highest Max-Forwards we send: RFC 3261 section
	// 16.6 step 3 decrements the received value; a proxy may lower it
	// further, and we never send more than the recommended initial 70.
	maxForwardsCap = 70
	// defaultMaxBreadth is RFC 5393 section 5's Max-Breadth for a request
	// that carries none.
	defaultMaxBreadth = 60
	// StatusMaxBreadthExceeded is RFC 5393 section 5.3.1's response.
	StatusMaxBreadthExceeded = 440
	// sweepEvery is how often expired bindings and dialogs are reclaimed.
	sweepEvery = 30 * time.Second
)

// routing is the state the proxy keeps to route safely: the trusted edge
// proxies, the fork bound, and the dialogs it record-routed.
type routing struct {
	trusted     []netip.Prefix
	maxBranches int
	dialogs     *dialogs
	localIPs    []netip.Addr // when listening on an unspecified address
	forwarded   atomic.Int64 // requests forwarded (client transactions made)
}

// Forwarded returns how many requests the proxy has forwarded (client
// transactions it started), for monitoring and tests.
func (s *Server) Forwarded() int64 { return s.forwarded.Load() }

func (s *Server) initRouting() error {
	for _, e := range s.cfg.TrustedEdges {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			s.trusted = append(s.trusted, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return fmt.Errorf("sipserver: trusted edge %q: not an IP address or network", e)
		}
		s.trusted = append(s.trusted, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	s.maxBranches = s.cfg.MaxBranches
	if s.maxBranches <= 0 {
		s.maxBranches = DefaultMaxBranches
	}
	s.dialogs = newDialogs(maxDialogs)
	if ip, err := netip.ParseAddr(s.host); err == nil && ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					s.localIPs = append(s.localIPs, p.Addr().Unmap())
				}
			}
		}
	}
	return nil
}

// sweepLoop reclaims expired registrations and dialogs (sipreg's Sweep is
// pure; the ticker is here).
func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweep()
		}
	}
}

func (s *Server) sweep() {
	now := s.now()
	if n := s.reg.Sweep(now); n > 0 {
		s.log.Debug("expired bindings removed", "count", n, "left", s.reg.Count())
	}
	s.dialogs.sweep(now)
	s.applied.sweep(now)
}

// trustedEdge reports whether a request came from a trusted edge proxy
// (Config.TrustedEdges).
func (s *Server) trustedEdge(source string) bool {
	host, _, err := net.SplitHostPort(source)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isSelf reports whether host:port is one of our own listening addresses:
// forwarding there would only loop back to us.
func (s *Server) isSelf(hostport string) bool {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	port, _ := strconv.Atoi(ps)
	if port == 0 || (port != s.sipPort && port != s.httpPort && port != s.tlsPort) {
		return false
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == strings.ToLower(s.host) || host == strings.ToLower(s.cfg.Domain) {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	if own, err := netip.ParseAddr(s.host); err == nil && own.IsUnspecified() {
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		for _, l := range s.localIPs {
			if l == a {
				return true
			}
		}
	}
	return false
}

// Loop detection (RFC 3261 section 16.3 step 4, 16.6 step 8, made
// mandatory for forking proxies by RFC 5393 section 4.2). Our Via branch
// is branchMagic + a keyed hash of the fields that identify the request
// as received + "." + a part unique per branch. A request that comes back
// carrying one of our Vias whose hash equals that of the request now has
// looped (482); if any of those fields changed (another Request-URI, a
// Route consumed), it spirals and goes on. The hash leaves out the Via
// itself (each hop changes it) and is keyed with the server's secret, so
// our branches are recognised whatever sent-by the transport wrote.
const branchMagic = sip.RFC3261BranchMagicCookie + "-ps."

// zero separates the fields a MAC covers.
var zero = [1]byte{}

// macPool holds HMAC-SHA256 states keyed with the server's secret: loop
// hashes and Record-Route tokens are made for every request forwarded,
// and a new HMAC allocates some 600 bytes.
type macPool struct {
	pool sync.Pool
}

func newMACPool(secret []byte) *macPool {
	return &macPool{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

func (p *macPool) get() hash.Hash {
	m := p.pool.Get().(hash.Hash)
	m.Reset()
	return m
}

func (p *macPool) put(m hash.Hash) { p.pool.Put(m) }

func (s *Server) loopHash(req *sip.Request) string {
	m := s.macs.get()
	defer s.macs.put(m)
	w := func(v string) { io.WriteString(m, v); m.Write(zero[:]) }
	w("loop")
	w(req.Recipient.String())
	if c := req.CallID(); c != nil {
		w(c.Value())
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		w(t)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		w(tag)
	}
	if c := req.CSeq(); c != nil {
		w(strconv.FormatUint(uint64(c.SeqNo), 10))
	}
	for _, name := range []string{"Route", "Proxy-Require", "Proxy-Authorization"} {
		for _, h := range req.GetHeaders(name) {
			w(name + ":" + h.Value())
		}
	}
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:12])
}

// looped reports whether req carries one of our Vias made for a request
// with the same loop hash.
func (s *Server) looped(req *sip.Request, hash string) bool {
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		b, _ := v.Params.Get("branch")
		if rest, ok := strings.CutPrefix(b, branchMagic); ok {
			if got, _, _ := strings.Cut(rest, "."); hmac.Equal([]byte(got), []byte(hash)) {
				return true
			}
		}
	}
	return false
}

// forwardedMaxForwards is the Max-Forwards of every copy we forward: the
// received value minus one (RFC 3261 section 16.6 step 3), at most
// maxForwardsCap, 70 when the request had none. ok is false when the
// request may not be forwarded (0: 483, section 16.3 step 3).
func forwardedMaxForwards(req *sip.Request) (uint32, bool) {
	mf := req.MaxForwards()
	if mf == nil {
		return maxForwardsCap, true
	}
	if mf.Val() == 0 {
		return 0, false
	}
	return min(mf.Val()-1, maxForwardsCap), true
}

// maxBreadth is the request's Max-Breadth (RFC 5393 section 5), or the
// default when absent or unreadable.
func maxBreadth(req *sip.Request) int {
	h := req.GetHeader("Max-Breadth")
	if h == nil {
		return defaultMaxBreadth
	}
	n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	if err != nil || n < 0 {
		return defaultMaxBreadth
	}
	return min(n, defaultMaxBreadth)
}

// fromSIPPort makes a request to be sent over UDP leave from the server's
// SIP port: the flow every UDP binding was registered on (RFC 5626
// section 5; a UA behind a NAT takes nothing from another port), and the
// port a peer's responses come back to. Left alone, sipgo's transport
// sends from the socket it last heard the destination on, or from a new
// socket when it never did, which is every contact registered on the
// stateless path until the reader has announced it to sipgo: a request
// racing that announcement left from an ephemeral port. A destination by
// host name, or of another IP family than the socket's, is left to sipgo.
func (s *Server) fromSIPPort(r *sip.Request) {
	if s.udp == nil || !strings.EqualFold(r.Transport(), "UDP") {
		return
	}
	la, ok := s.udp.LocalAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	host, _, err := net.SplitHostPort(r.Destination())
	if err != nil {
		return
	}
	dst, err := netip.ParseAddr(host)
	if err != nil {
		return
	}
	v4 := la.IP.To4() != nil
	switch {
	case v4 && !dst.Unmap().Is4():
		return
	case !v4 && !la.IP.IsUnspecified() && dst.Unmap().Is4():
		return
	}
	a := sip.Addr{IP: la.IP, Port: la.Port, Zone: la.Zone}
	if a.String() != la.String() {
		return // not the key sipgo keeps its listener under
	}
	r.Laddr = a
}
