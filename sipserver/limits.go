package sipserver

import (
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Limits bound what the outside can make the server hold or do. The zero
// value of a field takes its default (DefaultLimits); a negative value
// turns that limit off where the field says so. docs/security.md
// explains each one.
type Limits struct {
	// MaxConns caps the TCP, TLS and HTTP/WebSocket connections held at
	// once (default 2048, and never more than half the process's file
	// descriptor limit). A connection over the cap is closed at once.
	MaxConns int
	// MaxConnsPerIP caps the connections held from one source address
	// (default 32).
	MaxConnsPerIP int
	// IdleTimeout closes a SIP connection (TCP, TLS, WebSocket) on which
	// nothing arrived for this long (default 2 minutes). A connection that
	// carries a registration is kept until the registration expires (the
	// registrar reaches the client only through it, RFC 5626).
	IdleTimeout time.Duration
	// MaxMessageSize caps one SIP message on every transport: a UDP
	// datagram, a message framed on a TCP or TLS stream, a WebSocket
	// message (default 16 KiB; a WebRTC INVITE is 2 to 8 KiB).
	MaxMessageSize int
	// MaxHeaderBytes caps an HTTP request's header (default 16 KiB).
	MaxHeaderBytes int
	// RequestRate is how many new requests (REGISTER, INVITE, MESSAGE,
	// SUBSCRIBE, and the rest but ACK and CANCEL) one source address may
	// send per second, RequestBurst at once (defaults 20 and 100); above
	// it the server answers 503 with Retry-After. Negative: no limit.
	RequestRate  float64
	RequestBurst int
	// InputRate caps the bytes per second the server reads from one source
	// address before parsing (default 256 KiB/s, burst 4 times that):
	// datagrams over it are dropped, streams are slowed. It bounds the
	// transactions one source can make the server hold. Negative: none.
	InputRate int
	// MaxTransactions caps the SIP server transactions alive at once
	// (default 20000, some 60 MB; a UDP transaction lives 32 s after its answer, RFC
	// 3261 Timer J). Over it, UDP datagrams carrying new requests are
	// dropped unread, streams wait, and requests that still arrive are
	// answered 503.
	MaxTransactions int
	// MaxSources is how many source addresses the rate limiters remember
	// (default 65536); the least recently seen are forgotten first.
	MaxSources int
	// UDPReplyFactor bounds the bytes of the responses sent to a UDP
	// source that has not proved its address: at most this many times the
	// bytes received from it (default 2; see udpguard.go for why not 1).
	// Negative: no bound; the default with Open (no source can prove its
	// address without authentication).
	UDPReplyFactor int
	// MaxWatchesPerUser and MaxWatches cap the SIP API's script watches per
	// user and in total (defaults 16 and 1024; the node is asked about 100
	// of them a second, in turn); MaxWatchExpires caps a
	// watch's lifetime in seconds (default 3600, RFC 6665 section 4.2.1.1
	// lets the notifier shorten it).
	MaxWatchesPerUser int
	MaxWatches        int
	MaxWatchExpires   int
	// Exempt lists source networks the per-source limits do not apply to:
	// an edge proxy in front (Kamailio) that limits its own clients.
	Exempt []netip.Prefix
}

// DefaultLimits are the limits of a server exposed to the internet.
var DefaultLimits = Limits{
	MaxConns:          2048,
	MaxConnsPerIP:     32,
	IdleTimeout:       2 * time.Minute,
	MaxMessageSize:    16 << 10,
	MaxHeaderBytes:    16 << 10,
	RequestRate:       20,
	RequestBurst:      100,
	InputRate:         256 << 10,
	MaxTransactions:   20000,
	MaxSources:        65536,
	UDPReplyFactor:    2,
	MaxWatchesPerUser: 16,
	MaxWatches:        1024,
	MaxWatchExpires:   3600,
}

// withDefaults fills the zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	setInt(&l.MaxConns, d.MaxConns)
	// Half the descriptors stay for the store, the node's RPC and
	// outgoing connections.
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur > 64 && l.MaxConns > 0 && uint64(l.MaxConns) > r.Cur/2 {
		l.MaxConns = int(r.Cur / 2)
	}
	setInt(&l.MaxConnsPerIP, d.MaxConnsPerIP)
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	setInt(&l.MaxMessageSize, d.MaxMessageSize)
	setInt(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	if l.RequestRate == 0 {
		l.RequestRate = d.RequestRate
	}
	setInt(&l.RequestBurst, d.RequestBurst)
	setInt(&l.InputRate, d.InputRate)
	setInt(&l.MaxSources, d.MaxSources)
	setInt(&l.MaxTransactions, d.MaxTransactions)
	setInt(&l.UDPReplyFactor, d.UDPReplyFactor)
	setInt(&l.MaxWatchesPerUser, d.MaxWatchesPerUser)
	setInt(&l.MaxWatches, d.MaxWatches)
	setInt(&l.MaxWatchExpires, d.MaxWatchExpires)
	return l
}

func setInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// exempt reports whether a source address is exempt from per-source
// limits.
func (l *Limits) exempt(ip netip.Addr) bool {
	for _, p := range l.Exempt {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// sourceKey is what per-source limits count by: the address, or for IPv6
// its /64 (one subscriber's network: an attacker holding a /64 must not
// get 2^64 allowances).
func sourceKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// sourceIP is the IP address of a "host:port" source as sipgo reports it.
func sourceIP(src string) netip.Addr {
	if ap, err := netip.ParseAddrPort(src); err == nil {
		return ap.Addr().Unmap()
	}
	if i := strings.LastIndexByte(src, ':'); i > 0 {
		src = src[:i]
	}
	a, _ := netip.ParseAddr(strings.Trim(src, "[]"))
	return a.Unmap()
}
