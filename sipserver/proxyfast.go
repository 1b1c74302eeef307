package sipserver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The stateless path for in-dialog requests over UDP.
//
// Profiled under sipp load (a call: INVITE, 180, 200, ACK, BYE, 200,
// record-routed), a third of the proxy's CPU went to sipgo's transaction
// layer: a goroutine per message (and the growth of its stack), a server
// and a client transaction per BYE with their timers, a context per
// branch. A record-routing proxy needs none of that for the requests
// that follow a dialog's route set: RFC 3261 section 16.11 lets a proxy
// forward a request statelessly, and an in-dialog request other than
// INVITE creates no state a proxy must keep (Kamailio's tm forwards the
// ACK of a 2xx statelessly too).
//
// So, in the socket's reader, before sipgo: a UDP request of one of
// statelessMethods with a To tag whose top Route is ours is checked as
// onRequest (or onAck) would check it -- Max-Forwards (section 16.3 step
// 3), loops (step 4, RFC 5393), our Route entries popped with their
// token checked against the dialogs we record-routed (token.go), the
// per-source request rate, never forwarded to ourselves -- and forwarded
// at once with a Via whose branch is computed, not random (section
// 16.11: a retransmission gets the same branch, so the next hop sees a
// retransmission, not a new transaction). Its responses come back with
// that Via on top: recognised by the branch, which carries a MAC of the
// Via below it (only a response to a request we forwarded, to where that
// request came from, is relayed), our Via is removed and the response
// goes to the next Via's received/rport address (section 18.2.2, RFC 3581
// section 4).
//
// Anything else falls through to sipgo unchanged: a request that would be
// answered (483, 482, 403, 407, 503), one to a local address, to a
// WebSocket or .invalid Contact (the dialog's flow, routing.go), over
// TCP, to a host name (resolving it would block the reader), too large
// for UDP; INVITE (re-INVITEs included), CANCEL, SUBSCRIBE, REFER, PRACK
// and NOTIFY (dialog-forming or bound to a transaction sipgo holds).

// statelessMethods are the methods forwarded statelessly.
var statelessMethods = [...]sip.RequestMethod{sip.ACK, sip.BYE, sip.MESSAGE, sip.INFO, sip.UPDATE}

// statelessMark follows the loop hash in a stateless branch: our
// stateful branches have a random tag there (letters and digits), so the
// two never meet.
const statelessMark = ".~"

// loopHashLen is the length of loopHash's result (12 bytes, base64).
const loopHashLen = 16

var (
	responsePrefix = []byte("SIP/2.0 ")
	branchMagicB   = []byte(branchMagic)
)

// fastPath handles a UDP datagram in the socket's reader, and reports
// whether it did: a REGISTER (fastpath.go), an in-dialog request forwarded
// statelessly, a response to one.
func (s *Server) fastPath(data []byte, from *net.UDPAddr) bool {
	switch {
	case bytes.HasPrefix(data, registerPrefix):
		return s.fastRegister(data, from)
	case bytes.HasPrefix(data, responsePrefix):
		return s.fastResponse(data, from)
	case statelessStart(data):
		return s.fastInDialog(data, from)
	}
	return false
}

// statelessStart reports whether a datagram starts with the request
// line of one of statelessMethods.
func statelessStart(b []byte) bool {
	sp := bytes.IndexByte(b[:min(len(b), 12)], ' ')
	if sp < 0 {
		return false
	}
	return isStatelessMethod(sip.RequestMethod(b[:sp]))
}

func isStatelessMethod(m sip.RequestMethod) bool {
	for _, x := range statelessMethods {
		if m == x {
			return true
		}
	}
	return false
}

// fastInDialog forwards an in-dialog request statelessly, or reports
// false to leave it to sipgo.
func (s *Server) fastInDialog(data []byte, from *net.UDPAddr) bool {
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.SipVersion != "SIP/2.0" || !isStatelessMethod(req.Method) {
		return false
	}
	v, cs, to := req.Via(), req.CSeq(), req.To()
	if v == nil || cs == nil || cs.MethodName != req.Method || req.CallID() == nil || req.From() == nil || to == nil {
		return false
	}
	if tag, _ := to.Params.Get("tag"); tag == "" {
		return false
	}
	if r := req.GetHeader("Route"); r == nil || !s.isOurRoute(r) {
		return false
	}
	isAck := req.Method == sip.ACK
	if isAck && s.failedInvites.has(v, s.now()) {
		// The ACK of a non-2xx final response to a re-INVITE ends at
		// our server transaction (RFC 3261 section 17.2.1).
		return false
	}
	req.SetTransport("UDP")
	req.SetSource(from.String())
	mf, ok := forwardedMaxForwards(req)
	if !ok {
		return false // 483 (an ACK: dropped) on sipgo's path
	}
	loop := s.loopHash(req)
	if s.looped(req, loop) {
		return false // 482 on sipgo's path
	}
	now := s.now()
	_, tokenValid := s.popOurRoutes(req)
	inDialog := s.cfg.Open || (tokenValid && s.dialogs.allows(req, nextHop(req), now))
	t, ok := s.statelessTarget(req, inDialog, now)
	if !ok || !strings.EqualFold(t.transport, "UDP") || len(t.path) > 0 || s.isSelf(t.dest) {
		return false
	}
	dst, err := netip.ParseAddrPort(t.dest)
	if err != nil {
		return false // a host name: resolving it would block the reader
	}
	if !isAck {
		breadth := maxBreadth(req)
		if breadth == 0 {
			return false // 440 on sipgo's path
		}
		for req.RemoveHeader("Max-Breadth") {
		}
		req.AppendHeader(sip.NewHeader("Max-Breadth", strconv.Itoa(breadth)))
	}
	req.Recipient = t.uri
	m := sip.MaxForwardsHeader(mf)
	for req.RemoveHeader("Max-Forwards") {
	}
	req.AppendHeader(&m)
	stampVia(v, from)
	req.PrependHeader(s.statelessVia(loop, v))

	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	req.StringWrite(buf)
	if buf.Len() > 1300 {
		return false // RFC 3261 section 18.1.1: TCP, on sipgo's path
	}
	if !isAck {
		// The per-source rate, taken last: a request left to sipgo's
		// path is counted there, once.
		ip := from.AddrPort().Addr().Unmap()
		if !s.lim.exempt(ip) {
			if ok, _ := s.reqLimit.take(ip, 1, now); !ok {
				return false // 503 on sipgo's path
			}
		}
	}
	if _, err := s.udp.WriteTo(buf.Bytes(), net.UDPAddrFromAddrPort(dst)); err != nil {
		s.log.Debug("stateless forward", "method", req.Method, "dest", t.dest, "err", err)
		return true
	}
	s.forwarded.Add(1)
	return true
}

// statelessTarget is where an in-dialog request goes once our Route
// entries are popped, by the rules of onRequest and onAck: its next Route
// entry (inside a dialog we record-routed), a registered contact of the
// dialog's addresses (on the flow it registered from), or its
// Request-URI (inside a dialog we record-routed). A local Request-URI is
// left to sipgo's path.
func (s *Server) statelessTarget(req *sip.Request, inDialog bool, now time.Time) (target, bool) {
	if r := req.Route(); r != nil {
		if !inDialog {
			return target{}, false
		}
		return target{uri: req.Recipient, dest: hostPort(r.Address), transport: uriTransport(r.Address)}, true
	}
	u := req.Recipient
	if s.isLocal(u) {
		return target{}, false
	}
	if b, ok := s.reg.FindContactIn(u, dialogAORs(req), now); ok {
		t := s.bindingTarget(b)
		if req.Method == sip.ACK {
			t.uri = req.Recipient // as onAck
		}
		return t, true
	}
	if !inDialog {
		return target{}, false
	}
	t, ok := s.dialogTarget(req, u)
	if !ok || isInvalidHost(u.Host) || t.dest != hostPort(u) {
		return target{}, false // a dialog's flow: sipgo's path
	}
	return t, true
}

// stampVia adds to the received top Via what a server transport adds
// (RFC 3261 section 18.2.1): received, when the sent-by host is not the
// source address, and rport filled with the source port when the client
// asked for it (RFC 3581 section 4, which then asks for received too).
func stampVia(v *sip.ViaHeader, from *net.UDPAddr) {
	ip := from.AddrPort().Addr().Unmap().String()
	rport, has := v.Params.Get("rport")
	if has && rport == "" {
		v.Params.Add("rport", strconv.Itoa(from.Port))
	}
	if has || v.Host != ip {
		v.Params.Add("received", ip)
	}
}

// statelessVia is our Via on a request forwarded statelessly. Its branch
// (RFC 3261 section 16.11) is the magic cookie, the loop hash (so loop
// detection sees it, routing.go), statelessMark and a MAC, under the
// server's secret, of the Via below it: the same for a retransmission
// (same branch and source), and proof, when a response comes back with
// it, that the Via below is the one we forwarded.
func (s *Server) statelessVia(loop string, below *sip.ViaHeader) *sip.ViaHeader {
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: s.host, Port: s.sipPort,
		Params: sip.HeaderParams{{K: "branch", V: branchMagic + loop + statelessMark + s.viaMAC(loop, below)}}}
	return via
}

func (s *Server) viaMAC(loop string, v *sip.ViaHeader) string {
	m := s.macs.get()
	defer s.macs.put(m)
	w := func(v string) { io.WriteString(m, v); m.Write(zero[:]) }
	w("sl")
	w(loop)
	w(strings.ToUpper(v.Transport))
	w(v.Host)
	w(strconv.Itoa(v.Port))
	for _, k := range [...]string{"branch", "received", "rport"} {
		p, _ := v.Params.Get(k)
		w(p)
	}
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:12])
}

// statelessBranch splits a stateless branch into its loop hash and MAC.
func statelessBranch(b string) (loop, mac string, ok bool) {
	rest, ok := strings.CutPrefix(b, branchMagic)
	if !ok || len(rest) < loopHashLen+len(statelessMark) || rest[loopHashLen:loopHashLen+len(statelessMark)] != statelessMark {
		return "", "", false
	}
	return rest[:loopHashLen], rest[loopHashLen+len(statelessMark):], true
}

// fastResponse relays a response to a request forwarded statelessly, or
// reports false to leave it to sipgo (a response to a transaction).
func (s *Server) fastResponse(data []byte, from *net.UDPAddr) bool {
	// Only the top Via matters, and ours is the first our magic cookie
	// appears in: look before parsing.
	i := bytes.Index(data, branchMagicB)
	if i < 0 {
		return false
	}
	j := i + len(branchMagic) + loopHashLen
	if len(data) < j+len(statelessMark) || string(data[j:j+len(statelessMark)]) != statelessMark {
		return false
	}
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	res, ok := msg.(*sip.Response)
	if !ok {
		return false
	}
	vias := res.GetHeaders("Via")
	if len(vias) == 0 {
		return false
	}
	top, ok := vias[0].(*sip.ViaHeader)
	if !ok {
		return false
	}
	b, _ := top.Params.Get("branch")
	loop, mac, ok := statelessBranch(b)
	if !ok {
		return false
	}
	// From here on the response is ours or forged: either way, not
	// sipgo's (no transaction of its has such a branch).
	var next *sip.ViaHeader
	if len(vias) > 1 {
		next, _ = vias[1].(*sip.ViaHeader)
	}
	if next == nil || !hmac.Equal([]byte(mac), []byte(s.viaMAC(loop, next))) || !strings.EqualFold(next.Transport, "UDP") {
		s.log.Debug("response with a stateless branch we did not make; dropped", "from", from.String(), "status", res.StatusCode)
		return true
	}
	dst, ok := viaAddr(next)
	if !ok {
		return true
	}
	res.RemoveHeader("Via")
	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	res.StringWrite(buf)
	if _, err := s.udp.WriteTo(buf.Bytes(), net.UDPAddrFromAddrPort(dst)); err != nil {
		s.log.Debug("stateless response", "dest", dst.String(), "err", err)
	}
	if res.StatusCode >= 200 {
		cs := res.CSeq()
		if cs != nil {
			// Counted as relayed: a retransmitted final response is
			// counted again (there is no transaction to tell).
			s.metrics.transaction(methodIndex(cs.MethodName), res.StatusCode)
			if cs.MethodName == sip.BYE && res.IsSuccess() {
				s.dialogs.endedIDs(dialogIDsOf(res))
			}
		}
	}
	return true
}

// viaAddr is where a response goes over UDP (RFC 3261 section 18.2.2,
// RFC 3581 section 4): the Via's received address (else its host, an IP
// address: a name is not looked up in the reader), at its rport (else its
// port, else 5060).
func viaAddr(v *sip.ViaHeader) (netip.AddrPort, bool) {
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := v.Port
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		n, err := strconv.Atoi(rp)
		if err != nil || n <= 0 || n > 65535 {
			return netip.AddrPort{}, false
		}
		port = n
	}
	if port <= 0 || port > 65535 {
		port = sip.DefaultUdpPort
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

// dialogIDsOf is a response's Call-ID and tags.
func dialogIDsOf(res *sip.Response) (callID, fromTag, toTag string) {
	if c := res.CallID(); c != nil {
		callID = c.Value()
	}
	if f := res.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
	}
	if t := res.To(); t != nil {
		toTag, _ = t.Params.Get("tag")
	}
	return
}

// failedInvites remembers, for Timer H's 32 s (RFC 3261 section 17.2.1),
// the re-INVITEs we answered with a failure: their ACK (same branch and
// sent-by, section 17.2.3) belongs to sipgo's server transaction, not to
// the stateless path.
type failedInvites struct {
	mu sync.Mutex
	m  *lru[string, time.Time]
}

const failedInviteFor = 64 * 500 * time.Millisecond // 64*T1

func newFailedInvites(max int) *failedInvites {
	return &failedInvites{m: newLRU[string, time.Time](max)}
}

func viaKey(v *sip.ViaHeader) string {
	b, _ := v.Params.Get("branch")
	return b + "\x00" + strings.ToLower(v.Host) + ":" + strconv.Itoa(v.Port)
}

func (f *failedInvites) add(v *sip.ViaHeader, now time.Time) {
	k := viaKey(v)
	f.mu.Lock()
	f.m.put(k, now.Add(failedInviteFor))
	f.mu.Unlock()
}

func (f *failedInvites) has(v *sip.ViaHeader, now time.Time) bool {
	k := viaKey(v)
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.m.get(k)
	return ok && now.Before(until)
}
