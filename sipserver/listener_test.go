package sipserver

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeListener fails its first accepts with EMFILE, as a process out of
// file descriptors does, then hands out one end of a pipe.
type fakeListener struct {
	fails  int
	closed bool
}

func (f *fakeListener) Accept() (net.Conn, error) {
	if f.closed {
		return nil, net.ErrClosed
	}
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	a, _ := net.Pipe()
	return a, nil
}
func (f *fakeListener) Close() error   { f.closed = true; return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestAcceptErrorsAreTemporary: EMFILE from accept no longer ends the
// listener (sipgo's accept loop, and the server with it, returned on it);
// it backs off and goes on. Only a closed listener ends Accept.
func TestAcceptErrorsAreTemporary(t *testing.T) {
	f := &fakeListener{fails: 4}
	l := &limitListener{Listener: f, lim: newConnLimiter(DefaultLimits.withDefaults(), slog.New(slog.DiscardHandler)), kind: "tcp", log: slog.New(slog.DiscardHandler)}
	start := time.Now()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after 4 EMFILE: %v", err)
	}
	c.Close()
	if d := time.Since(start); d < 70*time.Millisecond { // 5+10+20+40 ms
		t.Fatalf("no back-off: %v", d)
	}
	f.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closed listener: %v", err)
	}
}

// TestSourceLimiterBounded: the table forgets the least recently seen
// source when full, and a forgotten source starts with a full bucket.
func TestSourceLimiterBounded(t *testing.T) {
	l := newSourceLimiter(1, 2, 3)
	now := time.Unix(1000, 0)
	ip := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, i}) }
	for i := byte(1); i <= 10; i++ {
		l.take(ip(i), 1, now)
	}
	if l.size() != 3 {
		t.Fatalf("table holds %d sources, max 3", l.size())
	}
	l.take(ip(10), 1, now)
	if ok, wait := l.take(ip(10), 1, now); ok || wait != time.Second {
		t.Fatalf("third request within the burst of 2: %v %v", ok, wait)
	}
	if ok, _ := l.take(ip(10), 1, now.Add(time.Second)); !ok {
		t.Fatal("no token after a second at 1/s")
	}
	// IPv6 sources count by /64.
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	l.take(a, 1, now)
	l.take(b, 1, now)
	if ok, _ := l.take(a, 1, now); ok {
		t.Fatal("two addresses of one /64 had two allowances")
	}
}

// FuzzDigestParam: the parameters read from a peer's Authorization header
// (for the UDP address proof) never panic, and a parameter written plainly
// is found.
func FuzzDigestParam(f *testing.F) {
	f.Add(`Digest username="alice", realm="paysip.test", nonce="AAAA", uri="sip:paysip.test", response="00", qop=auth, nc=00000001, cnonce="x"`, "nonce")
	f.Add(`Digest realm="a,b", nonce=`, "nonce")
	f.Add(`,,=,"`, "")
	f.Fuzz(func(t *testing.T, v, name string) {
		digestParam(v, name)
		if token(name) && !strings.EqualFold(name, "x") {
			if got := digestParam(`Digest x="1", `+name+`="v1"`, name); got != "v1" {
				t.Fatalf("%q: %q", name, got)
			}
		}
	})
}

// FuzzSourceIP: any source string sipgo could report parses or yields the
// zero address, never a panic.
func FuzzSourceIP(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5060", "[::1]:5060", "[::ffff:127.0.0.1]:1", "garbage", ":", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ip := sourceIP(s); ip.Is4In6() {
			t.Fatalf("%q: not unmapped: %v", s, ip)
		}
	})
}

// token reports whether s is a non-empty run of letters, digits and '-'.
func token(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}
