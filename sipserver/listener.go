package sipserver

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// connLimiter admits incoming connections under a total cap and a cap per
// source address, and keeps the SIP ones by remote address so that a
// registration can extend its connection's life.
type connLimiter struct {
	lim   Limits
	log   *slog.Logger
	input *sourceLimiter // bytes read per source address, for SIP streams
	busy  func() bool    // the server holds all the transactions it may

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
	byRem map[string]*trackedConn // SIP connections by remote "ip:port"

	refused atomic.Int64
	warned  atomic.Int64 // unix seconds of the last "over the cap" warning
}

func newConnLimiter(lim Limits, log *slog.Logger) *connLimiter {
	return &connLimiter{lim: lim, log: log, perIP: map[netip.Addr]int{}, byRem: map[string]*trackedConn{}}
}

// admit wraps c, or reports false when a cap is reached (the caller
// closes c).
func (l *connLimiter) admit(c net.Conn, kind string) (*trackedConn, bool) {
	ip := sourceIP(c.RemoteAddr().String())
	exempt := l.lim.exempt(ip)
	ip = sourceKey(ip)
	l.mu.Lock()
	if (l.lim.MaxConns > 0 && l.total >= l.lim.MaxConns) || (!exempt && l.lim.MaxConnsPerIP > 0 && l.perIP[ip] >= l.lim.MaxConnsPerIP) {
		total, per := l.total, l.perIP[ip]
		l.mu.Unlock()
		l.refused.Add(1)
		if now := time.Now().Unix(); l.warned.Swap(now) != now {
			l.log.Warn("connection refused: over the cap", "kind", kind, "from", ip, "from_ip", per, "total", total,
				"max_per_ip", l.lim.MaxConnsPerIP, "max", l.lim.MaxConns, "refused_so_far", l.refused.Load())
		}
		return nil, false
	}
	l.total++
	l.perIP[ip]++
	tc := &trackedConn{Conn: c, lim: l, ip: ip, exempt: exempt, rem: c.RemoteAddr().String()}
	l.mu.Unlock()
	return tc, true
}

func (l *connLimiter) release(c *trackedConn) {
	l.mu.Lock()
	l.total--
	if l.perIP[c.ip]--; l.perIP[c.ip] <= 0 {
		delete(l.perIP, c.ip)
	}
	if l.byRem[c.rem] == c {
		delete(l.byRem, c.rem)
	}
	l.mu.Unlock()
}

// manage starts idle deadlines on a SIP connection and indexes it by its
// remote address.
func (l *connLimiter) manage(c *trackedConn) {
	c.idle.Store(int64(l.lim.IdleTimeout))
	l.mu.Lock()
	if !c.closed.Load() {
		l.byRem[c.rem] = c
	}
	l.mu.Unlock()
}

// keepAtLeast keeps the SIP connection from remote open, idle or not,
// until t at least (a registration's expiry, an answered call's hold).
func (l *connLimiter) keepAtLeast(remote string, t time.Time) {
	l.mu.Lock()
	c := l.byRem[remote]
	l.mu.Unlock()
	if c == nil {
		return
	}
	for {
		old := c.keep.Load()
		if old >= t.UnixNano() {
			return
		}
		if c.keep.CompareAndSwap(old, t.UnixNano()) {
			c.Conn.SetReadDeadline(t)
			return
		}
	}
}

// count is the number of connections held.
func (l *connLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// trackedConn is an admitted connection. Once managed, every Read first
// sets the read deadline to the idle timeout from now (or the time a
// registration keeps it until), so a peer that goes quiet is dropped: any
// byte received, a WebSocket frame or a CRLF keep-alive (RFC 5626 section
// 3.5.1) included, counts as life.
type trackedConn struct {
	net.Conn
	lim    *connLimiter
	ip     netip.Addr // sourceKey of the remote address
	exempt bool
	rem    string
	idle   atomic.Int64 // nanoseconds; 0 = deadlines not managed (HTTP)
	keep   atomic.Int64 // unix nanoseconds
	once   sync.Once
	closed atomic.Bool
}

func (c *trackedConn) Read(p []byte) (int, error) {
	idle := time.Duration(c.idle.Load())
	if idle <= 0 {
		return c.Conn.Read(p)
	}
	d := time.Now().Add(idle)
	if k := time.Unix(0, c.keep.Load()); k.After(d) {
		d = k
	}
	if err := c.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	// While the server holds all the transactions it may, streams wait
	// (a second at most per read) rather than bring new requests.
	for i := 0; i < 20 && c.lim.busy != nil && c.lim.busy(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	n, err := c.Conn.Read(p)
	// Over the source's input rate, the stream waits (TCP pushes back on
	// the sender) instead of the server parsing faster than allowed.
	if n > 0 && c.lim.input != nil && !c.exempt {
		if ok, wait := c.lim.input.take(c.ip, float64(n), time.Now()); !ok {
			time.Sleep(min(wait, 2*time.Second))
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.lim.release(c)
	})
	return c.Conn.Close()
}

// asTracked finds the trackedConn under a connection the HTTP server
// handed over (possibly inside TLS).
func asTracked(c net.Conn) *trackedConn {
	for {
		switch x := c.(type) {
		case *trackedConn:
			return x
		case *tls.Conn:
			c = x.NetConn()
		case *replayConn:
			c = x.Conn
		default:
			return nil
		}
	}
}

// limitListener is a listener that never fails on a passing accept error
// and admits connections through a connLimiter. sipgo's stream transports
// return from their accept loop on the first error, which ended the
// server when file descriptors ran out (EMFILE); like net/http, this one
// backs off (5 ms doubling to 1 s), warns and goes on. Only closing the
// listener ends Accept.
type limitListener struct {
	net.Listener
	lim    *connLimiter
	kind   string
	manage bool // SIP connection: idle deadlines from the start
	log    *slog.Logger
	warned atomic.Int64
}

func (l *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			if now := time.Now().Unix(); l.warned.Swap(now) != now {
				l.log.Warn("accept failed; retrying", "kind", l.kind, "err", err, "retry_in", delay)
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		tc, ok := l.lim.admit(c, l.kind)
		if !ok {
			c.Close()
			continue
		}
		if l.manage {
			l.lim.manage(tc)
		}
		return tc, nil
	}
}
