package sipserver

import (
	"bytes"
	"net"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/paysip/paysip/sipauth"
)

// The stateless REGISTER path over UDP.
//
// Profiled under sipp load (docs/performance.md), a REGISTER through
// sipgo's stack spent about half its time in what a registrar does not
// need: a goroutine per datagram (and its stack growth), a server
// transaction with its timers, kept 32 s after the answer (RFC 3261 Timer
// J) and so, at 10,000 REGISTER/s, some 320,000 transactions for the
// garbage collector to walk. Worse, the goroutines it starts compete with
// the one reading the socket: under load the reader waited behind them,
// the socket's buffer overflowed, and REGISTERs were lost with no error
// anywhere.
//
// So a REGISTER that arrives over UDP is handled where it is read, in the
// socket's reader, without a transaction: parsed, checked by the same
// limits, answered by the same registrar code (onRegister), the response
// written at once. Like Kamailio's registrar (sl_send_reply), it is
// stateless (RFC 3261 section 10.3 asks the registrar to process REGISTERs
// in the order received, which one reader does; nothing in section 10
// requires a transaction). A retransmitted REGISTER whose answer was lost
// is applied again: the registry finds the same Call-ID and CSeq and
// answers with the bindings that request made (retransmitted, register.go);
// with digest authentication, its replayed nonce count earns a fresh
// challenge, which the client answers with a new request.
//
// Every other request, every REGISTER over TCP, TLS or WebSocket, and a
// REGISTER whose credentials name an account whose HA1 is not cached
// (checking it would wait on the store, ha1Pending) go through sipgo's
// transaction layer as before.

// statelessTx is the ServerTransaction of a REGISTER answered on the
// fast path: Respond writes the response to the socket at once, through
// the UDP guard (so the reflection limits apply), to the address sipgo
// would use (RFC 3261 section 18.2.2, RFC 3581 section 4).
type statelessTx struct {
	g    *udpGuard
	dest net.Addr
	err  error
}

var _ sip.ServerTransaction = (*statelessTx)(nil)

var fastBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (t *statelessTx) Respond(res *sip.Response) error {
	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	res.StringWrite(buf)
	if buf.Len() > sip.UDPMTUSize-200 {
		// RFC 3261 section 18.2.1: too large for UDP. A registrar's answer
		// grows with the bindings; MaxContacts keeps it small.
		t.err = sip.ErrUDPMTUCongestion
		return t.err
	}
	if _, err := t.g.WriteTo(buf.Bytes(), t.dest); err != nil {
		t.err = err
		return err
	}
	return nil
}

func (t *statelessTx) Terminate()                         {}
func (t *statelessTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *statelessTx) Done() <-chan struct{}              { return closedChan }
func (t *statelessTx) Err() error                         { return t.err }
func (t *statelessTx) Acks() <-chan *sip.Request          { return nil }
func (t *statelessTx) OnCancel(sip.FnTxCancel) bool       { return false }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

var registerPrefix = []byte("REGISTER ")

// fastRegister handles a UDP datagram if it is a REGISTER, and reports
// whether it did. A datagram it cannot parse is left to sipgo (which
// answers or logs it as it always did).
func (s *Server) fastRegister(data []byte, from *net.UDPAddr) bool {
	if !bytes.HasPrefix(data, registerPrefix) {
		return false
	}
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil || req.CSeq() == nil || req.CSeq().MethodName != sip.REGISTER {
		return false
	}
	if s.ha1Pending(req) {
		// Checking its credentials would wait on the store (a network
		// round trip with PostgreSQL): not in the socket's reader, which
		// every other datagram waits behind. sipgo's path checks it in a
		// goroutine of its own, and fills the cache for the next one.
		return false
	}
	src := from.String()
	req.SetTransport("UDP")
	req.SetSource(src)
	s.register(req, &statelessTx{g: s.udp, dest: responseAddr(req, from)})
	return true
}

// ha1Pending reports whether checking req's credentials would ask the
// store: its Authorization for our realm (the one authenticate checks)
// names a user whose HA1 is not in the cache. Credentials that do not
// parse are refused without the store.
func (s *Server) ha1Pending(req *sip.Request) bool {
	if s.cfg.Open {
		return false
	}
	var value string
	for _, h := range req.GetHeaders("Authorization") {
		if strings.Contains(h.Value(), `realm="`+s.cfg.Domain+`"`) {
			value = h.Value()
		}
	}
	if value == "" {
		return false
	}
	cred, err := sipauth.ParseCredentials(value)
	if err != nil {
		return false
	}
	alg := cred.Algorithm
	if alg == "" {
		alg = "MD5"
	}
	return !s.ha1s.cached(cred.Username, strings.ToUpper(alg))
}

// responseAddr is where a UDP response goes (RFC 3261 section 18.2.2):
// the source address, at the port of the top Via's sent-by (5060 when
// absent), or at the source port when the Via asks for rport (RFC 3581
// section 4) -- what sipgo does for its transactions.
func responseAddr(req *sip.Request, from *net.UDPAddr) *net.UDPAddr {
	v := req.Via()
	port := v.Port
	if port == 0 {
		port = sip.DefaultUdpPort
	}
	if rp, ok := v.Params.Get("rport"); ok && rp == "" {
		port = from.Port
	}
	if port == from.Port {
		return from
	}
	return &net.UDPAddr{IP: from.IP, Port: port, Zone: from.Zone}
}
