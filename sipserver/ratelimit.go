package sipserver

import (
	"container/list"
	"math"
	"net/netip"
	"sync"
	"time"
)

// sourceLimiter is a token bucket per source address, in the spirit of
// Kamailio's pike module: each source may spend burst tokens at once and
// earns rate tokens a second. The table holds at most max sources; the
// least recently seen is forgotten first (a forgotten source starts again
// with a full bucket, so eviction never locks anyone out). Keys are source
// addresses, never accounts: one attacker cannot spend a real user's
// allowance.
type sourceLimiter struct {
	rate, burst float64
	max         int

	mu    sync.Mutex
	table map[netip.Addr]*list.Element
	lru   list.List // of *sourceBucket, most recent at the front
}

type sourceBucket struct {
	ip     netip.Addr
	tokens float64
	last   time.Time
}

func newSourceLimiter(rate, burst float64, max int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: burst, max: max, table: map[netip.Addr]*list.Element{}}
}

// take spends n tokens of ip's bucket at now. It reports whether they were
// there and, if not, how long until they will be.
func (l *sourceLimiter) take(ip netip.Addr, n float64, now time.Time) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	ip = sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *sourceBucket
	if e, ok := l.table[ip]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*sourceBucket)
		if d := now.Sub(b.last); d > 0 {
			b.tokens = math.Min(l.burst, b.tokens+d.Seconds()*l.rate)
		}
		b.last = now
	} else {
		if l.lru.Len() >= l.max {
			old := l.lru.Back()
			delete(l.table, old.Value.(*sourceBucket).ip)
			l.lru.Remove(old)
		}
		b = &sourceBucket{ip: ip, tokens: l.burst, last: now}
		l.table[ip] = l.lru.PushFront(b)
	}
	if b.tokens >= n {
		b.tokens -= n
		return true, 0
	}
	wait := time.Duration((n - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// size is how many sources the table holds.
func (l *sourceLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
