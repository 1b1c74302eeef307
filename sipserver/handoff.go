package sipserver

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
)

// handoffListener is a net.Listener fed by the HTTP server: a WebSocket
// upgrade on /sip is hijacked and handed, with the request bytes replayed,
// to sipgo's WebSocket transport, which performs the upgrade (RFC 7118)
// itself. So SIP over WebSocket shares the HTTP server with the API and the
// web UI.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	lim    *connLimiter
}

func newHandoffListener(addr net.Addr, lim *connLimiter) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{}), lim: lim}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// ServeHTTP takes over a WebSocket upgrade request.
func (l *handoffListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket") {
		http.Error(w, "SIP over WebSocket (RFC 7118): upgrade with subprotocol \"sip\"", http.StatusUpgradeRequired)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	var replay bytes.Buffer
	if err := r.Write(&replay); err != nil {
		conn.Close()
		return
	}
	// Bytes the HTTP server read ahead belong to the WebSocket stream.
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		replay.Write(b)
	}
	// From now on the connection is SIP: idle deadlines and the input
	// rate apply (listener.go), the HTTP server's timeouts no longer.
	if tc := asTracked(conn); tc != nil && l.lim != nil {
		l.lim.manage(tc)
	}
	rc := &replayConn{Conn: conn, r: bufio.NewReader(&multiReader{first: &replay, rest: conn})}
	select {
	case l.conns <- rc:
	case <-l.closed:
		conn.Close()
	}
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range bytes.Split([]byte(v), []byte(",")) {
			if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
				return true
			}
		}
	}
	return false
}

type multiReader struct {
	first *bytes.Buffer
	rest  net.Conn
}

func (m *multiReader) Read(p []byte) (int, error) {
	if m.first.Len() > 0 {
		return m.first.Read(p)
	}
	return m.rest.Read(p)
}

type replayConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
