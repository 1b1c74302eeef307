package sipserver

import (
	"bytes"
	"context"
	"encoding/hex"
	"github.com/paysip/paysip/sipext"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipreg"
)

// target is one place a request is forwarded to.
type target struct {
	uri       sip.Uri  // Request-URI to send
	dest      string   // host:port of the next hop
	transport string   // UDP, TCP, TLS, WS
	path      []string // Route set to add (a registration's Path)
}

// bindingTarget is where a binding is reached (see Server.bindingTarget;
// for requests the server makes itself, which cannot loop).
func bindingTarget(b sipreg.Binding) target {
	return (&Server{}).bindingTarget(b)
}

// bindingTarget is where a binding is reached: the flow its REGISTER
// came on, or, behind an edge proxy, the first entry of its Path (RFC 3327
// section 5.3: the Path becomes the Route). Path entries naming this proxy
// are dropped: we are already here, and sending to ourselves would loop.
func (s *Server) bindingTarget(b sipreg.Binding) target {
	t := target{uri: b.Contact.Address, dest: b.Source, transport: b.Transport}
	path := b.Path
	for len(path) > 0 {
		var u sip.Uri
		var p sip.HeaderParams
		if _, err := sip.ParseAddressValue(path[0], &u, &p); err != nil {
			path = path[1:]
			continue
		}
		if s.isSelf(hostPort(u)) {
			path = path[1:]
			continue
		}
		t.path = path
		t.dest, t.transport = hostPort(u), uriTransport(u)
		break
	}
	return t
}

func hostPort(u sip.Uri) string {
	port := u.Port
	if port == 0 {
		port = sip.DefaultPort(uriTransport(u))
	}
	return u.Host + ":" + strconv.Itoa(port)
}

func uriTransport(u sip.Uri) string {
	if u.UriParams != nil {
		if t, ok := u.UriParams.Get("transport"); ok {
			return strings.ToUpper(t)
		}
	}
	return "UDP"
}

// aor is the address-of-record a local Request-URI names.
func (s *Server) aor(u sip.Uri) string {
	return sipreg.AOR(sip.Uri{User: u.User, Host: s.cfg.Domain})
}

// isOurRoute reports whether a Route entry points at this proxy.
func (s *Server) isOurRoute(h sip.Header) bool {
	r, ok := h.(*sip.RouteHeader)
	if !ok {
		return false
	}
	return r.Address.User == "" && s.isLocal(r.Address)
}

// popOurRoutes removes this proxy's entries from the top of the Route set
// (loose routing, RFC 3261 section 16.4) and reports whether one carried a
// token, and whether a token is good for the request's dialog (token.go).
func (s *Server) popOurRoutes(req *sip.Request) (seen, valid bool) {
	for {
		routes := req.GetHeaders("Route")
		if len(routes) == 0 || !s.isOurRoute(routes[0]) {
			return seen, valid
		}
		r := routes[0].(*sip.RouteHeader)
		if tok, ok := r.Address.UriParams.Get("ps"); ok {
			seen = true
			if s.checkToken(tok, req, s.now()) {
				valid = true
			}
		}
		req.RemoveHeader("Route")
	}
}

// nextHop is where req goes once our own Route entries are popped: its
// next Route entry, else its Request-URI.
func nextHop(req *sip.Request) string {
	if r := req.Route(); r != nil {
		return hostPort(r.Address)
	}
	return hostPort(req.Recipient)
}

// toDialogContact reports whether req, with no Route left, targets a
// registered contact of its From or To address.
func (s *Server) toDialogContact(req *sip.Request) bool {
	if req.Route() != nil {
		return false
	}
	_, ok := s.reg.FindContactIn(req.Recipient, dialogAORs(req), s.now())
	return ok
}

// dialogAORs returns the AORs of a request's From and To (whose registered
// contacts an in-dialog request may target).
func dialogAORs(req *sip.Request) []string {
	var out []string
	if f := req.From(); f != nil {
		out = append(out, sipreg.AOR(f.Address))
	}
	if t := req.To(); t != nil {
		out = append(out, sipreg.AOR(t.Address))
	}
	return out
}

// onRequest routes every request but REGISTER and ACK (RFC 3261 section
// 16): local AORs to their bindings (forking), in-dialog requests along
// their Route set, the SIP API to its handler.
func (s *Server) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsCancel() {
		// A CANCEL that matched an INVITE was answered by the transaction
		// layer, which told the fork (OnCancel); this one matched nothing.
		s.respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if req.SipVersion != "SIP/2.0" {
		s.respond(tx, req, sip.StatusVersionNotSupported, "Version Not Supported")
		return
	}
	if cs := req.CSeq(); cs == nil || cs.MethodName != req.Method {
		s.respond(tx, req, sip.StatusBadRequest, "Bad Request: CSeq method does not match")
		return
	}
	// RFC 3261 section 16.3 step 3 (Max-Forwards) and step 4 (loops), on
	// the request as received.
	if _, ok := forwardedMaxForwards(req); !ok {
		s.respond(tx, req, sip.StatusTooManyHops, "Too Many Hops")
		return
	}
	loop := s.loopHash(req)
	if s.looped(req, loop) {
		s.log.Warn("loop detected", "method", req.Method, "to", req.Recipient.String(), "from", req.Source())
		s.respond(tx, req, sip.StatusLoopDetected, "Loop Detected")
		return
	}
	// Loose routing (RFC 3261 section 16.4): pop our own Route entries.
	tokenSeen, tokenValid := s.popOurRoutes(req)
	inDialog := tokenValid && s.dialogs.allows(req, nextHop(req), s.now())
	if tokenSeen && !inDialog && !s.cfg.Open && !s.toDialogContact(req) {
		// Our Route with a token, but not for this dialog, expired, for a
		// dialog never established, or towards a hop the dialog does not
		// have: someone is trying to relay through us. (A request to a
		// registered contact of the dialog's own addresses is not a relay:
		// it goes on below.) An account holder that sent credentials is
		// checked as such instead: its dialog may have outlived our table.
		if req.GetHeader("Proxy-Authorization") == nil {
			s.log.Warn("in-dialog request refused: not a dialog routed here", "method", req.Method, "next", nextHop(req), "from", req.Source())
			s.respond(tx, req, sip.StatusForbidden, "Forbidden: not a dialog routed by this proxy")
			return
		}
		if s.authenticate(req, tx, true) == "" {
			return
		}
		inDialog = true // an account holder may send it anywhere
	}
	if r := req.Route(); r != nil {
		// A further hop elsewhere: only inside a dialog we record-routed,
		// or for an account holder (no open relay).
		if !s.cfg.Open && !inDialog && s.authenticate(req, tx, true) == "" {
			return
		}
		s.fork(req, tx, loop, []target{{uri: req.Recipient, dest: hostPort(r.Address), transport: uriTransport(r.Address)}})
		return
	}
	u := req.Recipient
	if s.isLocal(u) {
		switch u.User {
		case "":
			if req.Method == sip.OPTIONS {
				s.respond(tx, req, sip.StatusOK, "OK", sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, SUBSCRIBE, NOTIFY, REGISTER, UPDATE, REFER, PRACK"),
					sip.NewHeader("Supported", "path, paysip"))
			} else {
				s.respond(tx, req, sip.StatusNotFound, "Not Found")
			}
			return
		case BitcoinUser:
			s.api.handle(req, tx)
			return
		case DirectoryUser:
			if isDirectorySubscribe(req) {
				s.dir.handle(req, tx)
				return
			}
		}
		bindings := s.reg.Lookup(s.aor(u), s.now())
		if len(bindings) == 0 {
			s.respond(tx, req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
			return
		}
		if s.cfg.NoAnonymousInbound && !s.cfg.Open && s.authenticate(req, tx, true) == "" {
			return
		}
		if req.IsInvite() && !supportsPaysip(req) {
			offer := append(bindings, s.listingsOf(s.aor(u))...)
			if terms, ok := pricedTerms(offer); ok {
				s.log.Info("402: caller does not offer paysip", "aor", s.aor(u), "from", req.Source())
				s.respond(tx, req, sip.StatusPaymentRequired, "Payment Required", sip.NewHeader(TermsHeader, terms))
				return
			}
		}
		targets := make([]target, 0, len(bindings))
		for _, b := range bindings {
			targets = append(targets, s.bindingTarget(b))
		}
		limit := s.maxBranches
		if u.User == DirectoryUser {
			// The directory's ask goes to every member: accounts, each
			// with at most MaxContacts listings; Max-Breadth bounds it.
			limit = max(limit, defaultMaxBreadth)
		}
		s.forkUpTo(req, tx, loop, targets, limit)
		return
	}
	// A registered contact of the dialog's own addresses (in-dialog
	// requests target them), reached on the flow it registered from.
	if b, ok := s.reg.FindContactIn(u, dialogAORs(req), s.now()); ok {
		s.fork(req, tx, loop, []target{s.bindingTarget(b)})
		return
	}
	// Leaving the domain: account holders only, unless the request follows
	// a dialog we record-routed.
	if !s.cfg.Open && !inDialog && s.authenticate(req, tx, true) == "" {
		return
	}
	t, ok := s.dialogTarget(req, u)
	if !ok {
		// RFC 6761 section 6.4: .invalid names are never looked up (a
		// WebSocket client's Contact, RFC 7118 section 5); without the
		// flow its dialog came on, it cannot be reached.
		s.respond(tx, req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable: no flow to this .invalid contact")
		return
	}
	s.fork(req, tx, loop, []target{t})
}

// dialogTarget is where an in-dialog request to the Contact u goes: back
// on the flow that end's dialog came on when u cannot be dialled (a
// WebSocket client, a .invalid host), else u itself. It is false for a
// .invalid host without such a flow.
func (s *Server) dialogTarget(req *sip.Request, u sip.Uri) (target, bool) {
	t := target{uri: u, dest: hostPort(u), transport: uriTransport(u)}
	invalid := isInvalidHost(u.Host)
	if invalid || t.transport == "WS" || t.transport == "WSS" {
		if f, ok := s.dialogs.flowTo(req, t.dest, s.now()); ok {
			t.dest, t.transport = f.source, f.transport
			return t, true
		}
	}
	return t, !invalid
}

// isInvalidHost: the special-use name "invalid" (RFC 6761 section 6.4).
func isInvalidHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "invalid" || strings.HasSuffix(h, ".invalid")
}

// onAck forwards an ACK for a 2xx (end to end, RFC 3261 section 16.6)
// statelessly; ACKs for other responses end at the transaction layer.
func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	mf, ok := forwardedMaxForwards(req)
	if !ok {
		return
	}
	_, tokenValid := s.popOurRoutes(req)
	t := target{uri: req.Recipient, dest: hostPort(req.Recipient), transport: uriTransport(req.Recipient)}
	allowed := s.cfg.Open || (tokenValid && s.dialogs.allows(req, nextHop(req), s.now()))
	if r := req.Route(); r != nil {
		t.dest, t.transport = hostPort(r.Address), uriTransport(r.Address)
	} else if b, ok := s.reg.FindContactIn(req.Recipient, dialogAORs(req), s.now()); ok {
		t = s.bindingTarget(b)
		t.uri = req.Recipient
		allowed = true
	} else if dt, ok := s.dialogTarget(req, req.Recipient); ok {
		t = dt
	} else {
		allowed = false
	}
	if !allowed || s.isSelf(t.dest) {
		// No response to an ACK: drop it (no relay for an ACK either).
		s.log.Debug("ACK not forwarded: not a dialog routed here", "to", req.Recipient.String(), "from", req.Source())
		return
	}
	fwd := req.Clone()
	m := sip.MaxForwardsHeader(mf) // its own header: Clone shares it
	for fwd.RemoveHeader("Max-Forwards") {
	}
	fwd.AppendHeader(&m)
	fwd.SetTransport(t.transport)
	fwd.SetDestination(t.dest)
	s.fromSIPPort(fwd)
	if err := s.client.WriteRequest(fwd, sipgo.ClientRequestAddVia); err != nil {
		s.log.Debug("forwarding ACK", "err", err)
	}
}

// Payment headers: Supported/Require option tag and the terms header of a
// 402 (docs/protocol.md); the vocabulary lives in package sipext.
const (
	OptionTag   = sipext.OptionTag
	TermsHeader = sipext.TermsHeader
)

func supportsPaysip(req *sip.Request) bool {
	for _, name := range []string{"Supported", "Require"} {
		for _, h := range req.GetHeaders(name) {
			if sipext.Supports(h.Value()) {
				return true
			}
		}
	}
	return false
}

// pricedTerms builds the 402 terms from a priced binding's parameters; a
// binding whose parameters do not parse (a price that is not a positive
// number, a key that is not hex) is not quoted.
func pricedTerms(bs []sipreg.Binding) (string, bool) {
	for _, b := range bs {
		price, ok := b.Param(sipext.ParamPrice)
		if !ok {
			continue
		}
		t := sipext.Terms{Version: 1, Transports: []string{sipext.TransportDataChannel, sipext.TransportMessage}}
		var err error
		if t.PriceSatPerMin, err = strconv.ParseInt(price, 10, 64); err != nil || t.PriceSatPerMin <= 0 {
			continue
		}
		if v, ok := b.Param(sipext.ParamMinDeposit); ok {
			if t.MinDepositSat, err = strconv.ParseInt(v, 10, 64); err != nil || t.MinDepositSat < 0 {
				continue
			}
		}
		if v, ok := b.Param(sipext.ParamKey); ok {
			if _, err := hex.DecodeString(v); err != nil || len(v) != 66 {
				continue
			}
			t.PayeeKey = v
		}
		return t.String(), true
	}
	return "", false
}

// forkState is one forwarded request and its branches.
type forkState struct {
	mu        sync.Mutex
	s         *Server
	tx        sip.ServerTransaction
	req       *sip.Request
	invite    bool
	branches  []*branch
	finalSent bool
	best      *sip.Response
	done      chan struct{} // closed once the final response is sent
}

type branch struct {
	req    *sip.Request
	tx     sip.ClientTransaction
	cancel context.CancelFunc
	final  bool
}

func (s *Server) recordRoute(transport, token string) sip.Header {
	t := strings.ToLower(transport)
	port := s.sipPort
	switch t {
	case "ws", "wss":
		port = s.httpPort
	case "tls":
		port = s.tlsPort
	}
	return &sip.RecordRouteHeader{Address: sip.Uri{Host: s.host, Port: port,
		UriParams: sip.HeaderParams{{K: "transport", V: t}, {K: "ps", V: token}, {K: "lr", V: ""}}}}
}

// fork forwards req to every target (parallel forking, RFC 3261 section
// 16.6) and relays the responses: provisional ones as they come, the first
// 2xx at once (cancelling the other INVITE branches), otherwise the best
// final response once every branch is done (section 16.7).
//
// Every branch is its own copy of the request with its own Max-Forwards
// (the received value minus one, section 16.6 step 3) and a Via branch
// carrying loop, the request's loop hash (routing.go). Targets that are
// this proxy itself are dropped (482 if none is left); at most
// maxBranches targets, and no more than the request's Max-Breadth allows
// (RFC 5393 section 5), are tried; each copy carries its share of the
// breadth.
func (s *Server) fork(req *sip.Request, tx sip.ServerTransaction, loop string, targets []target) {
	s.forkUpTo(req, tx, loop, targets, s.maxBranches)
}

// forkUpTo is fork with its own bound on branches.
func (s *Server) forkUpTo(req *sip.Request, tx sip.ServerTransaction, loop string, targets []target, limit int) {
	mf, ok := forwardedMaxForwards(req)
	if !ok {
		s.respond(tx, req, sip.StatusTooManyHops, "Too Many Hops")
		return
	}
	kept := targets[:0:0]
	for _, t := range targets {
		if s.isSelf(t.dest) {
			s.log.Warn("not forwarding to ourselves", "method", req.Method, "to", t.uri.String(), "dest", t.dest, "from", req.Source())
			continue
		}
		kept = append(kept, t)
	}
	if len(kept) == 0 {
		s.respond(tx, req, sip.StatusLoopDetected, "Loop Detected")
		return
	}
	breadth := maxBreadth(req)
	if breadth == 0 {
		s.respond(tx, req, StatusMaxBreadthExceeded, "Max-Breadth Exceeded")
		return
	}
	if n := min(limit, breadth); len(kept) > n {
		s.log.Warn("fork capped", "method", req.Method, "to", req.Recipient.String(), "targets", len(kept), "branches", n)
		kept = kept[:n] // the most recently registered first
	}
	share := max(breadth/len(kept), 1)
	fs := &forkState{s: s, tx: tx, req: req, invite: req.IsInvite(), done: make(chan struct{})}
	if fs.invite {
		tx.OnCancel(func(*sip.Request) { fs.cancelAll() })
	}
	dialogForming := req.Method == sip.INVITE || req.Method == sip.SUBSCRIBE || req.Method == sip.REFER
	token := ""
	if dialogForming {
		token = s.rrToken(req, s.now())
	}
	addVia := func(c *sipgo.Client, r *sip.Request) error {
		if err := sipgo.ClientRequestAddVia(c, r); err != nil {
			return err
		}
		r.Via().Params.Add("branch", branchMagic+loop+"."+sip.GenerateTagN(10))
		return nil
	}
	for _, t := range kept {
		r := req.Clone()
		r.Recipient = t.uri
		for i := len(t.path) - 1; i >= 0; i-- {
			var u sip.Uri
			var p sip.HeaderParams
			if _, err := sip.ParseAddressValue(t.path[i], &u, &p); err == nil {
				r.PrependHeader(&sip.RouteHeader{Address: u})
			}
		}
		// Clone shares header objects: the copy gets new ones.
		m := sip.MaxForwardsHeader(mf)
		for r.RemoveHeader("Max-Forwards") {
		}
		r.AppendHeader(&m)
		for r.RemoveHeader("Max-Breadth") {
		}
		r.AppendHeader(sip.NewHeader("Max-Breadth", strconv.Itoa(share)))
		if dialogForming {
			// Double Record-Route when the transports differ (RFC 5658),
			// so each side has an entry it can reach.
			r.PrependHeader(s.recordRoute(req.Transport(), token))
			if !strings.EqualFold(req.Transport(), t.transport) {
				r.PrependHeader(s.recordRoute(t.transport, token))
			}
		}
		r.SetTransport(t.transport)
		// RFC 3261 section 18.1.1: a request over 1300 bytes (counting the
		// Via we add) goes over TCP, not UDP.
		if strings.EqualFold(t.transport, "UDP") && messageSize(r)+120 > 1300 {
			r.SetTransport("TCP")
		}
		r.SetDestination(t.dest)
		s.fromSIPPort(r)
		timeout := 32 * time.Second
		if fs.invite {
			timeout = 3 * time.Minute // timer C
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		b := &branch{req: r, cancel: cancel}
		ctxTx, err := s.client.TransactionRequest(ctx, r, addVia)
		if err != nil {
			s.log.Warn("forwarding failed", "to", t.dest, "transport", t.transport, "err", err)
			b.final = true
			fs.branches = append(fs.branches, b)
			fs.record(sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil))
			continue
		}
		s.forwarded.Add(1)
		b.tx = ctxTx
		fs.branches = append(fs.branches, b)
	}
	proxied := false
	// One branch of a request other than INVITE (a BYE, an in-dialog
	// MESSAGE) is watched here, by the handler that waits for it anyway:
	// a goroutine less per request. An INVITE's branches outlive its
	// final response (further 2xx are relayed, RFC 3261 section 16.7
	// step 5), so each gets its own.
	inline := len(fs.branches) == 1 && !fs.invite && fs.branches[0].tx != nil
	fs.mu.Lock()
	for _, b := range fs.branches {
		if b.tx != nil {
			if fs.invite && !proxied {
				proxied = true
				s.metrics.proxied.Inc()
			}
			if !inline {
				go fs.watch(b)
			}
		}
	}
	fs.maybeFinish()
	fs.mu.Unlock()
	if inline {
		fs.watch(fs.branches[0]) // returns once the final response is handled
		return
	}
	// sipgo ends the server transaction when the handler returns: hold it
	// until the final response is sent, so a CANCEL can still match the
	// INVITE and responses go out on a live transaction.
	hold := time.NewTimer(4 * time.Minute)
	defer hold.Stop()
	select {
	case <-fs.done:
	case <-tx.Done():
	case <-hold.C:
	}
}

// messageSize is the size of a message once written, without keeping
// the text.
func messageSize(m sip.Message) int {
	buf := fastBufs.Get().(*bytes.Buffer)
	defer fastBufs.Put(buf)
	buf.Reset()
	m.StringWrite(buf)
	return buf.Len()
}

// sendFinal marks the final response sent (caller holds fs.mu).
func (fs *forkState) sendFinal() {
	if !fs.finalSent {
		fs.finalSent = true
		close(fs.done)
	}
}

// upstream readies a branch response for the caller: our Via removed, and
// addressed to where the request came from (it would otherwise keep the
// branch's addressing, and over UDP go back to ourselves). In place, not
// on a copy: sipgo's client transaction is done with a response once it
// has passed it up (it built a failure's ACK before, RFC 3261 section
// 17.1.1.3, and a retransmission is a new message), and a copy of every
// relayed response was 4% of a call's CPU.
func (fs *forkState) upstream(res *sip.Response) *sip.Response {
	up := res
	up.RemoveHeader("Via")
	up.SetTransport(fs.req.Transport())
	up.SetSource("")
	up.SetDestination(fs.req.Source())
	return up
}

func (fs *forkState) watch(b *branch) {
	defer b.cancel()
	for {
		select {
		case res, ok := <-b.tx.Responses():
			if !ok {
				return
			}
			if res.StatusCode == 100 {
				continue
			}
			fs.onResponse(b, res)
			if res.StatusCode >= 200 && !(fs.invite && res.IsSuccess()) {
				return
			}
		case <-b.tx.Done():
			fs.mu.Lock()
			if !b.final {
				b.final = true
				code, reason := sip.StatusRequestTimeout, "Request Timeout"
				if err := b.tx.Err(); err != nil && !strings.Contains(err.Error(), "timeout") {
					code, reason = sip.StatusServiceUnavailable, "Service Unavailable"
				}
				fs.record(sip.NewResponseFromRequest(fs.req, code, reason, nil))
				fs.maybeFinish()
			}
			fs.mu.Unlock()
			return
		}
	}
}

func (fs *forkState) onResponse(b *branch, res *sip.Response) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	switch {
	case res.IsProvisional():
		fs.s.dialogEvent(fs.req, res)
		if !fs.finalSent {
			fs.tx.Respond(fs.upstream(res))
		}
	case res.IsSuccess():
		b.final = true
		fs.s.dialogEvent(fs.req, res)
		if fs.invite {
			// Every 2xx to an INVITE goes up (RFC 3261 section 16.7 step 5).
			if !fs.finalSent {
				fs.s.metrics.established.Inc()
				fs.tx.Respond(fs.upstream(res))
				fs.sendFinal()
				fs.cancelOthers(b)
			} else {
				fs.s.srv.WriteResponse(fs.upstream(res))
			}
			return
		}
		if !fs.finalSent {
			fs.tx.Respond(fs.upstream(res))
			fs.sendFinal()
		}
		fs.maybeFinish()
	default:
		b.final = true
		fs.s.dialogEvent(fs.req, res)
		fs.record(fs.upstream(res))
		if fs.invite && res.StatusCode >= 600 {
			fs.cancelOthers(b)
		}
		fs.maybeFinish()
	}
}

// record keeps the best final response: 6xx first, then the lowest class.
func (fs *forkState) record(res *sip.Response) {
	if fs.best == nil {
		fs.best = res
		return
	}
	rank := func(c int) int {
		if c >= 600 {
			return 0
		}
		return c
	}
	if rank(res.StatusCode)/100 < rank(fs.best.StatusCode)/100 {
		fs.best = res
	}
}

// maybeFinish sends the best response once every branch is final.
func (fs *forkState) maybeFinish() {
	if fs.finalSent {
		return
	}
	for _, b := range fs.branches {
		if !b.final {
			return
		}
	}
	best := fs.best
	if best == nil {
		best = sip.NewResponseFromRequest(fs.req, sip.StatusRequestTimeout, "Request Timeout", nil)
	}
	res := sip.NewResponseFromRequest(fs.req, best.StatusCode, best.Reason, best.Body())
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate", "Retry-After", TermsHeader, "Content-Type", "Warning", "Reason"} {
		for _, h := range best.GetHeaders(name) {
			res.AppendHeader(sip.NewHeader(name, h.Value()))
		}
	}
	if res.StatusCode == sip.StatusServiceUnavailable {
		res.StatusCode, res.Reason = sip.StatusInternalServerError, "Server Internal Error" // RFC 3261 section 16.7 step 6
	}
	fs.tx.Respond(res)
	fs.sendFinal()
}

func (fs *forkState) cancelAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.cancelOthers(nil)
}

// cancelOthers sends CANCEL (RFC 3261 section 9.1) to every pending
// INVITE branch but keep.
func (fs *forkState) cancelOthers(keep *branch) {
	for _, b := range fs.branches {
		if b == keep || b.final || b.tx == nil {
			continue
		}
		c := cancelFor(b.req)
		fs.s.fromSIPPort(c)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
			defer cancel()
			if _, err := fs.s.client.Do(ctx, c, func(*sipgo.Client, *sip.Request) error { return nil }); err != nil {
				fs.s.log.Debug("CANCEL", "err", err)
			}
		}()
	}
}

// cancelFor builds the CANCEL of a forwarded INVITE: same Request-URI,
// Call-ID, From, To, CSeq number and top Via (so it matches the branch),
// and its Route set.
func cancelFor(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, inv.Recipient)
	if v := inv.Via(); v != nil {
		c.AppendHeader(v.Clone())
	}
	for _, r := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(r))
	}
	m := sip.MaxForwardsHeader(70)
	c.AppendHeader(&m)
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cl := sip.ContentLengthHeader(0)
	c.AppendHeader(&cl)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	return c
}

// listingsOf returns the directory listings naming aor.
func (s *Server) listingsOf(aor string) []sipreg.Binding {
	var out []sipreg.Binding
	for _, b := range s.reg.Lookup(sipreg.AOR(sipURI(DirectoryUser, s.cfg.Domain)), s.now()) {
		if v, _ := b.Param(sipext.ParamAOR); v == aor {
			out = append(out, b)
		}
	}
	return out
}

// dialogEvent keeps the dialog table (token.go) in step with the
// responses we relay: a provisional response with a To tag makes an early
// dialog (RFC 3261 section 12.1: PRACK, UPDATE may follow), a 2xx to a
// dialog-forming request confirms (or refreshes) it, a failure ends an
// early one, a 2xx to a BYE ends it.
func (s *Server) dialogEvent(req *sip.Request, res *sip.Response) {
	switch req.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER:
		switch {
		case res.StatusCode == sip.StatusTrying:
		case res.StatusCode >= 300:
			s.dialogs.failed(req, res)
		default:
			ours := func(u sip.Uri) bool { _, ok := u.UriParams.Get("ps"); return ok && s.isLocal(u) }
			if !s.dialogs.established(req, res, ours, s.now()) {
				s.log.Warn("dialog table full: in-dialog requests of this dialog will need credentials", "call-id", req.CallID().Value())
			}
		}
	case sip.BYE:
		if res.IsSuccess() {
			s.dialogs.ended(req)
		}
	}
}
