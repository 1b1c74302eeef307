// Package sipserver is paysip's SIP server for one domain: a registrar
// (RFC 3261 section 10) and a stateful forking proxy (section 16) over UDP,
// TCP and WebSocket (RFC 7118, on the HTTP server at /sip), TLS and WSS
// when given a certificate; digest authentication (RFC 8760); the priced
// directory; 402 Payment Required for callers that cannot pay; and the
// SIP API to the Bitcoin network at sip:bitcoin@DOMAIN.
//
// Parsing, transports and transactions are emiago/sipgo's; the registrar's
// bindings are package sipreg's, the digest checks package sipauth's.
package sipserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/sipauth"
	"github.com/paysip/paysip/sipreg"
)

// Accounts are the domain's users (store.DB implements it).
type Accounts interface {
	UserHA1(ctx context.Context, name, realm, algorithm string) (string, bool)
}

// Config configures a server.
type Config struct {
	// Domain is the SIP domain served (the host part of its addresses).
	Domain string
	// SIPAddr is the UDP and TCP listen address (default 127.0.0.1:5060).
	SIPAddr string
	// HTTPAddr serves SIP over WebSocket at /sip and the directory at
	// /api/directory (default 127.0.0.1:8080).
	HTTPAddr string
	// TLSCert and TLSKey enable SIP over TLS on TLSAddr and make the HTTP
	// server HTTPS (so WebSocket is WSS).
	TLSCert, TLSKey string
	TLSAddr         string
	// Open turns authentication off (local development only).
	Open bool
	// DigestAlgorithms are the digest algorithms offered, in order
	// (sipauth.DefaultAlgorithms, MD5 only, when empty: see there why).
	DigestAlgorithms []string
	// NoAnonymousInbound refuses calls to the domain's addresses from
	// callers without an account (they are allowed by default: a priced
	// line needs only its callers' payment).
	NoAnonymousInbound bool
	Accounts           Accounts
	// Chain backs the SIP API to Bitcoin; nil answers it with 503.
	Chain chain.Chain
	// APIRate is how many SIP API requests one source address may make per
	// second (burst twice that); default 10.
	APIRate float64
	// TrustedEdges are the addresses (IP or CIDR) of edge proxies whose
	// Path header (RFC 3327) the registrar accepts, such as a Kamailio in
	// front of browsers; a REGISTER with a Path from anywhere else is
	// refused with 403. Empty: no Path is accepted.
	TrustedEdges []string
	// MaxContacts bounds the bindings one account may hold at one address
	// (sipreg.DefaultMaxContacts when 0); MaxBindings bounds them in total
	// (sipreg.DefaultMaxBindings when 0).
	MaxContacts, MaxBindings int
	// MaxBranches bounds the branches one request is forked to
	// (DefaultMaxBranches when 0).
	MaxBranches int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Limits bound connections, message sizes, request rates and watches
	// (zero fields take DefaultLimits).
	Limits Limits
	Log    *slog.Logger
	// HTTPHandler, if set, serves every other HTTP path (the web UI).
	HTTPHandler http.Handler
	// Metrics serves the Prometheus metrics (metrics.go) at GET /metrics
	// on the HTTP server.
	Metrics bool
	// Secret keys digest nonces, Record-Route tokens and loop hashes
	// (random when empty). Every node of a domain behind one edge needs
	// the same (sipauth: shared secrets).
	Secret []byte
}

// Server is a running SIP server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	reg      *sipreg.Registry
	auth     *sipauth.Verifier
	now      func() time.Time
	api      *bitcoinAPI
	dir      *directoryFeed // the live directory (directory.go)
	ready    chan struct{}
	lim      Limits
	conns    *connLimiter
	reqLimit *sourceLimiter // requests per source address
	input    *sourceLimiter // bytes read per source address
	udp      *udpGuard
	txLive   atomic.Int64 // server transactions alive
	sipPort  int
	httpPort int
	tlsPort  int
	host     string
	parser   *sip.Parser
	register sipgo.RequestHandler // the registrar behind the limits (fastpath.go)
	macs     *macPool             // HMACs under auth.Secret (routing.go)
	metrics  *sipMetrics
	applied  appliedLog // REGISTERs applied, to tell retransmissions (register.go)
	// failedInvites: re-INVITEs answered with a failure, whose ACK is
	// sipgo's (proxyfast.go).
	failedInvites *failedInvites
	ha1s          *ha1Cache // the accounts' HA1s looked up lately (ha1cache.go)

	mu       sync.Mutex
	branches map[string]*forkState // INVITE server tx key -> its fork

	routing // loop detection, trusted edges, dialogs (routing.go)
}

// DirectoryUser is the AOR user of the shared directory address.
const DirectoryUser = "directory"

// BitcoinUser is the AOR user of the SIP API to Bitcoin.
const BitcoinUser = "bitcoin"

// New makes a server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		return nil, errors.New("sipserver: no domain")
	}
	if cfg.SIPAddr == "" {
		cfg.SIPAddr = "127.0.0.1:5060"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.APIRate == 0 {
		cfg.APIRate = 10
	}
	if !cfg.Open && cfg.Accounts == nil {
		return nil, errors.New("sipserver: authentication needs accounts (or Open)")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "sip")
	if cfg.Open && cfg.Limits.UDPReplyFactor == 0 {
		// Without authentication no UDP source can prove its address, and
		// real clients' answers (a 200 with the bindings, a forwarded 200
		// with SDP) exceed their requests: the open development server
		// answers in full, as the relay it is.
		cfg.Limits.UDPReplyFactor = -1
	}
	lim := cfg.Limits.withDefaults()
	host, _, err := net.SplitHostPort(cfg.SIPAddr)
	if err != nil {
		return nil, err
	}
	// sipgo's own logs are about what peers sent: see peerLogHandler.
	peerLog := slog.New(newPeerLogHandler(log.Handler()))
	// One size limit for every transport: the parser refuses a datagram,
	// a stream-framed message or a WebSocket message above it.
	parser := sip.NewParser(func(p *sip.Parser) { p.MaxMessageLength = lim.MaxMessageSize })
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("paysip"), sipgo.WithUserAgentHostname(host), sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(peerLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(peerLog)))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(peerLog))
	if err != nil {
		return nil, err
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientLogger(peerLog))
	if err != nil {
		return nil, err
	}
	secret := cfg.Secret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	s := &Server{cfg: cfg, log: log, ua: ua, srv: srv, client: client, reg: sipreg.New(sipreg.Limits{MaxContacts: cfg.MaxContacts, MaxBindings: cfg.MaxBindings}), now: cfg.Now,
		ready: make(chan struct{}), host: host, branches: map[string]*forkState{}, lim: lim, parser: parser}
	s.conns = newConnLimiter(lim, log)
	s.reqLimit = newSourceLimiter(lim.RequestRate, float64(lim.RequestBurst), lim.MaxSources)
	s.input = newSourceLimiter(float64(lim.InputRate), 4*float64(lim.InputRate), lim.MaxSources)
	s.conns.input = s.input
	s.conns.busy = s.busy
	s.ha1s = newHA1Cache(cfg.Accounts, cfg.Domain, lim.MaxSources, cfg.Now) // ha1cache.go
	s.auth = &sipauth.Verifier{Realm: cfg.Domain, Secret: secret, Algorithms: cfg.DigestAlgorithms, Lookup: s.ha1s.lookup}
	s.macs = newMACPool(secret)
	s.applied.m = newLRU[string, appliedRegister](appliedMax)
	s.failedInvites = newFailedInvites(lim.MaxSources)
	s.metrics = theMetrics()
	if err := s.initRouting(); err != nil {
		return nil, err
	}
	s.api = newBitcoinAPI(s)
	s.dir = newDirectoryFeed(s)
	s.register = s.limited(s.registerKeepingFlow)
	srv.OnRegister(s.register)
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.MESSAGE, sip.INFO, sip.BYE, sip.OPTIONS, sip.SUBSCRIBE,
		sip.NOTIFY, sip.UPDATE, sip.REFER, sip.PRACK, sip.PUBLISH, sip.CANCEL} {
		srv.OnRequest(m, s.limited(s.onRequest))
	}
	srv.OnAck(s.onAck)
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		s.respond(tx, req, sip.StatusMethodNotAllowed, "Method Not Allowed")
	})
	if cfg.Open {
		log.Warn("AUTHENTICATION IS OFF (--open): anyone can register any address and use the Bitcoin API; for local development only",
			"udp_reply_factor", lim.UDPReplyFactor)
	}
	return s, nil
}

// Registry exposes the location service (tests, monitoring).
func (s *Server) Registry() *sipreg.Registry { return s.reg }

// Ready is closed when the listeners are up.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// SIPPort, HTTPPort and TLSPort are the bound ports once Ready.
func (s *Server) SIPPort() int  { return s.sipPort }
func (s *Server) HTTPPort() int { return s.httpPort }
func (s *Server) TLSPort() int  { return s.tlsPort }

// Run listens and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.live()()
	rawUDP, rawTCP, err := s.listenSIP()
	if err != nil {
		return err
	}
	rawHTTP, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		rawUDP.Close()
		rawTCP.Close()
		return err
	}
	s.httpPort = rawHTTP.Addr().(*net.TCPAddr).Port
	// Every listener goes through the limits (listener.go, udpguard.go).
	s.udp = newUDPGuard(rawUDP, s.lim, s.input, s.log, s.now)
	s.udp.busy = s.busy
	s.udp.fast = s.fastPath
	if s.lim.RequestRate > 0 {
		s.udp.requests = newSourceLimiter(4*s.lim.RequestRate, 2*float64(s.lim.RequestBurst), s.lim.MaxSources)
	}
	var udp net.PacketConn = s.udp
	var tcp net.Listener = s.limitListener(rawTCP, "tcp", true)
	var hl net.Listener = s.limitListener(rawHTTP, "http", false)
	var tlsConf *tls.Config
	var tlsL net.Listener
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
		addr := s.cfg.TLSAddr
		if addr == "" {
			addr = net.JoinHostPort(s.host, "5061")
		}
		raw, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		tlsL = tls.NewListener(s.limitListener(raw, "tls", true), tlsConf)
		s.tlsPort = tlsL.Addr().(*net.TCPAddr).Port
		hl = tls.NewListener(hl, tlsConf)
	}
	ws := newHandoffListener(hl.Addr(), s.conns)
	mux := http.NewServeMux()
	mux.Handle("/sip", ws)
	mux.HandleFunc("/api/directory", s.serveDirectory)
	if s.cfg.Metrics {
		mux.Handle("GET /metrics", MetricsHandler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A WebSocket upgrade on any path is SIP (some stacks use "/").
		if headerHas(r.Header, "Upgrade", "websocket") {
			ws.ServeHTTP(w, r)
			return
		}
		if s.cfg.HTTPHandler != nil {
			s.cfg.HTTPHandler.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	// HTTP keep-alive and slow clients are bounded too; a WebSocket leaves
	// these behind when it is handed over (handoff.go).
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: min(60*time.Second, s.lim.IdleTimeout), MaxHeaderBytes: s.lim.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(newPeerLogHandler(s.log.Handler()), slog.LevelWarn)}

	errs := make(chan error, 5)
	go func() { errs <- s.srv.ServeUDP(udp) }()
	go func() { errs <- s.srv.ServeTCP(tcp) }()
	go func() { errs <- s.srv.ServeWS(ws) }()
	go func() { errs <- hs.Serve(hl) }()
	if tlsL != nil {
		go func() { errs <- s.srv.ServeTLS(tlsL) }()
	}
	go s.api.watchLoop(ctx)
	go s.dir.run(ctx)
	go s.sweepLoop(ctx)
	s.log.Info("SIP server up", "domain", s.cfg.Domain, "udp+tcp", udp.LocalAddr(), "http+ws", hl.Addr(), "tls", s.tlsPort)
	close(s.ready)
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	hs.Close()
	ws.Close()
	rawUDP.Close()
	tcp.Close()
	if tlsL != nil {
		tlsL.Close()
	}
	s.srv.Close()
	s.ua.Close()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// udpReadBuffer is the SIP UDP socket's receive buffer (SO_RCVBUF).
const udpReadBuffer = 8 << 20

// listenSIP binds UDP and TCP on the same port. With port 0 the kernel
// picks the UDP port, and the same number may be taken for TCP: then it
// tries another.
func (s *Server) listenSIP() (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(s.cfg.SIPAddr)
	if err != nil {
		return nil, nil, err
	}
	tries := 1
	if port == "0" {
		tries = 20
	}
	var lastErr error
	for i := 0; i < tries; i++ {
		udp, err := net.ListenPacket("udp", s.cfg.SIPAddr)
		if err != nil {
			return nil, nil, err
		}
		// A deep receive buffer rides out a pause of the reader (a
		// garbage collection, another process on the core) without the
		// kernel dropping datagrams; the kernel caps it at
		// net.core.rmem_max (docs/performance.md).
		if u, ok := udp.(*net.UDPConn); ok {
			u.SetReadBuffer(udpReadBuffer)
		}
		p := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", net.JoinHostPort(s.host, strconv.Itoa(p)))
		if err == nil {
			s.sipPort = p
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
	}
	return nil, nil, lastErr
}

// respond answers a request with a status and optional extra headers.
func (s *Server) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond", "err", err)
	}
}

// isLocal reports whether a URI's host is this server's domain or address.
func (s *Server) isLocal(u sip.Uri) bool {
	h := strings.ToLower(u.Host)
	if h == strings.ToLower(s.cfg.Domain) {
		return true
	}
	if h == s.host && (u.Port == 0 || u.Port == s.sipPort || u.Port == s.httpPort || u.Port == s.tlsPort) {
		return true
	}
	return false
}

// authenticate checks a request's credentials, challenging it (401 or
// 407) when they are missing or wrong. It returns the user, or "" after
// answering the request.
func (s *Server) authenticate(req *sip.Request, tx sip.ServerTransaction, proxy bool) string {
	hdrName, chalName, code, reason := "Authorization", "WWW-Authenticate", 401, "Unauthorized"
	if proxy {
		hdrName, chalName, code, reason = "Proxy-Authorization", "Proxy-Authenticate", 407, "Proxy Authentication Required"
	}
	var value string
	for _, h := range req.GetHeaders(hdrName) {
		if strings.Contains(h.Value(), `realm="`+s.cfg.Domain+`"`) {
			value = h.Value()
		}
	}
	client, _, _ := net.SplitHostPort(req.Source())
	user, err := s.auth.Verify(sipauth.Request{Authorization: value, Method: req.Method.String(), URI: req.Recipient.String(), Client: client}, s.now())
	if err == nil {
		if req.Transport() == "UDP" && s.udp != nil {
			// A nonce sent to this address came back from it: the
			// address is proved (no spoofed source).
			s.udp.verifyNonce(digestParam(value, "nonce"), req.Source())
		}
		return user
	}
	if !errors.Is(err, sipauth.ErrNoCredentials) {
		s.log.Warn("authentication failed", "method", req.Method, "from", req.Source(), "err", err)
	}
	var hdrs []sip.Header
	for _, c := range s.auth.Challenges(client, s.now(), errors.Is(err, sipauth.ErrStale)) {
		hdrs = append(hdrs, sip.NewHeader(chalName, c))
		if req.Transport() == "UDP" && s.udp != nil {
			s.udp.challenged(digestParam(c, "nonce"), req.Source())
		}
	}
	s.respond(tx, req, code, reason, hdrs...)
	return ""
}

// limitListener wraps a stream listener in the connection limits.
func (s *Server) limitListener(l net.Listener, kind string, sip bool) net.Listener {
	return &limitListener{Listener: l, lim: s.conns, kind: kind, manage: sip, log: s.log}
}

// limited answers 503 with Retry-After (RFC 3261 sections 21.5.4 and
// 20.33) to a source address over its request rate, before any other
// work (authentication included). ACK has no answer, and a CANCEL follows
// its INVITE.
func (s *Server) limited(h sipgo.RequestHandler) sipgo.RequestHandler {
	var warned atomic.Int64
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if tx != nil {
			mt := &meteredTx{ServerTransaction: tx, m: s.metrics, method: methodIndex(req.Method)}
			if req.IsInvite() && req.Transport() == "UDP" && req.To() != nil && req.Via() != nil {
				if tag, _ := req.To().Params.Get("tag"); tag != "" {
					// A re-INVITE: the ACK of a failure is this
					// transaction's, not the stateless path's.
					v := req.Via()
					mt.failed = func() { s.failedInvites.add(v, s.now()) }
				}
			}
			tx = mt
			s.txLive.Add(1)
			if !tx.OnTerminate(func(string, error) { s.txLive.Add(-1) }) {
				s.txLive.Add(-1)
			}
		}
		if req.Method != sip.ACK && req.Method != sip.CANCEL && s.busy() {
			if now := time.Now().Unix(); warned.Swap(now) != now {
				s.log.Warn("transaction limit", "live", s.txLive.Load(), "max", s.lim.MaxTransactions)
			}
			s.metrics.busy.Inc()
			s.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable: busy", sip.NewHeader("Retry-After", "5"))
			return
		}
		if req.IsInvite() && req.Transport() != "UDP" && tx != nil {
			tx = &callFlowTx{ServerTransaction: tx, s: s, src: req.Source()}
		}
		if req.Method != sip.ACK && req.Method != sip.CANCEL {
			ip := sourceIP(req.Source())
			if !s.lim.exempt(ip) {
				if ok, wait := s.reqLimit.take(ip, 1, s.now()); !ok {
					s.metrics.rateLimited.Inc()
					if now := time.Now().Unix(); warned.Swap(now) != now {
						s.log.Warn("request rate limit", "from", ip, "method", req.Method, "rate", s.lim.RequestRate, "burst", s.lim.RequestBurst)
					}
					s.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable: rate limit",
						sip.NewHeader("Retry-After", strconv.Itoa(int(math.Ceil(max(wait.Seconds(), 1))))))
					return
				}
			}
		}
		h(req, tx)
	}
}

// callFlowHold is how long a connection that placed an answered call is
// kept open, idle or not: the callee's BYE, a re-INVITE or the payee's
// in-dialog MESSAGE reach the caller only along it (a paid call sends no
// SIP while the DataChannel carries the payments).
const callFlowHold = 2 * time.Hour

// callFlowTx is an INVITE's server transaction that keeps the caller's
// connection open once the call is answered.
type callFlowTx struct {
	sip.ServerTransaction
	s   *Server
	src string
}

func (t *callFlowTx) Respond(res *sip.Response) error {
	if res.IsSuccess() {
		t.s.conns.keepAtLeast(t.src, t.s.now().Add(callFlowHold))
	}
	return t.ServerTransaction.Respond(res)
}

// busy reports whether the server holds as many transactions as allowed.
func (s *Server) busy() bool { return s.txLive.Load() >= int64(s.lim.MaxTransactions) }

// registerKeepingFlow is the registrar, and then keeps the connection a
// registration arrived on open until the registration expires, idle or
// not: the registrar reaches the contact only along that flow (RFC 5626
// section 5).
func (s *Server) registerKeepingFlow(req *sip.Request, tx sip.ServerTransaction) {
	s.onRegister(req, tx)
	if req.Transport() == "UDP" || req.To() == nil {
		return
	}
	var until time.Time
	for _, b := range s.reg.Lookup(s.aor(req.To().Address), s.now()) {
		if b.Source == req.Source() && b.Expires.After(until) {
			until = b.Expires
		}
	}
	if !until.IsZero() {
		s.conns.keepAtLeast(req.Source(), until.Add(30*time.Second))
	}
}

// digestParam is a parameter of a digest challenge or credentials header
// value (RFC 7616 section 3.3), unquoted; "" when absent.
func digestParam(v, name string) string {
	for _, part := range splitList(strings.TrimPrefix(strings.TrimSpace(v), "Digest ")) {
		k, val, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return ""
}
