// Package sipua is a SIP user agent for Go agents (payers and payees):
// registration with refresh, the priced directory, calls (INVITE with SDP,
// ACK, BYE, CANCEL, re-INVITE answered) and in-dialog MESSAGE, with
// context-aware APIs, over emiago/sipgo. Every request goes through the
// domain's proxy (an outbound proxy, RFC 3261 section 8.1.2).
package sipua

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipext"
)

// Config configures a user agent.
type Config struct {
	// AOR is the agent's address, e.g. sip:tutor@paysip.test.
	AOR string
	// Proxy is the domain's SIP server, host:port.
	Proxy string
	// Transport to the proxy: "tcp" (default) or "udp". A call's SDP with a
	// DataChannel is ~2 KB, over what UDP carries safely.
	Transport string
	// Username and Password answer digest challenges; empty for anonymous.
	Username, Password string
	// ContactParams are added to the registered Contact (the directory's
	// offer, +sip.instance...), in order, as name=value.
	ContactParams [][2]string
	Log           *slog.Logger
}

// UA is a running user agent.
type UA struct {
	cfg     Config
	log     *slog.Logger
	aor     sip.Uri
	proxy   sip.Uri
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	client  *sipgo.Client
	contact sip.ContactHeader
	dcli    *sipgo.DialogClientCache
	dsrv    *sipgo.DialogServerCache

	mu        sync.Mutex
	onInvite  func(*IncomingCall)
	onMessage func(req *sip.Request) (int, string)
	calls     map[string]*Call // Call-ID -> call, for in-dialog MESSAGE
	regCSeq   uint32
	regCallID string
	listener  net.Listener
	sipgoLog  *layerLog
	stop      chan struct{}  // closed by Close
	keepers   sync.WaitGroup // KeepRegistered loops
	closeOnce sync.Once
}

// layerLog is the log of sipgo's transport and transaction layers. They
// log at error level what the network does to us (a peer resetting its
// connection: "Read error"), which is not our bug: at most a warning, and
// once the agent is closing, the connections it closes itself are
// debugging detail.
type layerLog struct {
	h       slog.Handler
	closing atomic.Bool
}

func (l *layerLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, l.level(level))
}

func (l *layerLog) level(level slog.Level) slog.Level {
	if l.closing.Load() {
		return min(level, slog.LevelDebug)
	}
	return min(level, slog.LevelWarn)
}

func (l *layerLog) Handle(ctx context.Context, r slog.Record) error {
	r.Level = l.level(r.Level)
	return l.h.Handle(ctx, r)
}

func (l *layerLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &derivedLog{parent: l, h: l.h.WithAttrs(as)}
}

func (l *layerLog) WithGroup(name string) slog.Handler {
	return &derivedLog{parent: l, h: l.h.WithGroup(name)}
}

// derivedLog is a layerLog with attributes, sharing its closing state.
type derivedLog struct {
	parent *layerLog
	h      slog.Handler
}

func (d *derivedLog) Enabled(ctx context.Context, level slog.Level) bool {
	return d.h.Enabled(ctx, d.parent.level(level))
}

func (d *derivedLog) Handle(ctx context.Context, r slog.Record) error {
	r.Level = d.parent.level(r.Level)
	return d.h.Handle(ctx, r)
}

func (d *derivedLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &derivedLog{parent: d.parent, h: d.h.WithAttrs(as)}
}

func (d *derivedLog) WithGroup(name string) slog.Handler {
	return &derivedLog{parent: d.parent, h: d.h.WithGroup(name)}
}

// New starts a user agent listening on loopback.
func New(cfg Config) (*UA, error) {
	if cfg.Transport == "" {
		cfg.Transport = "tcp"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &UA{cfg: cfg, log: log.With("component", "sipua", "aor", cfg.AOR), calls: map[string]*Call{}, stop: make(chan struct{})}
	if err := sip.ParseUri(cfg.AOR, &u.aor); err != nil {
		return nil, fmt.Errorf("AOR %q: %w", cfg.AOR, err)
	}
	host, port, err := net.SplitHostPort(cfg.Proxy)
	if err != nil {
		return nil, fmt.Errorf("proxy %q: %w", cfg.Proxy, err)
	}
	p, _ := strconv.Atoi(port)
	u.proxy = sip.Uri{Scheme: "sip", Host: host, Port: p, UriParams: sip.HeaderParams{{K: "transport", V: cfg.Transport}, {K: "lr", V: ""}}}
	u.sipgoLog = &layerLog{h: u.log.Handler()}
	layers := slog.New(u.sipgoLog)
	if u.ua, err = sipgo.NewUA(sipgo.WithUserAgent("paysip-ua"), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(layers)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(layers))); err != nil {
		return nil, err
	}
	if u.srv, err = sipgo.NewServer(u.ua); err != nil {
		return nil, err
	}
	if u.client, err = sipgo.NewClient(u.ua, sipgo.WithClientHostname("127.0.0.1")); err != nil {
		return nil, err
	}
	network := cfg.Transport
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go u.srv.ServeUDP(pc)
		p = pc.LocalAddr().(*net.UDPAddr).Port
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		u.listener = l
		go u.srv.ServeTCP(l)
		p = l.Addr().(*net.TCPAddr).Port
	}
	u.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: u.aor.User, Host: "127.0.0.1", Port: p,
		UriParams: sip.HeaderParams{{K: "transport", V: network}}}, Params: sip.NewParams()}
	u.dcli = sipgo.NewDialogClientCache(u.client, u.contact)
	u.dsrv = sipgo.NewDialogServerCache(u.client, u.contact)
	u.srv.OnInvite(u.handleInvite)
	u.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { u.dsrv.ReadAck(req, tx) })
	u.srv.OnBye(u.handleBye)
	u.srv.OnMessage(u.handleMessage)
	u.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return u, nil
}

// Close stops the agent: registrations kept by KeepRegistered are removed
// first (while the agent can still hear the answers), then the transports
// close. Calling it again is harmless.
func (u *UA) Close() error {
	first := false
	u.closeOnce.Do(func() { first = true; close(u.stop) })
	if !first {
		return nil
	}
	u.keepers.Wait()
	u.sipgoLog.closing.Store(true)
	if u.listener != nil {
		u.listener.Close()
	}
	return u.ua.Close()
}

// AOR is the agent's address.
func (u *UA) AOR() sip.Uri { return u.aor }

// Contact is the agent's contact URI.
func (u *UA) Contact() sip.Uri { return u.contact.Address }

func (u *UA) route() *sip.RouteHeader { return &sip.RouteHeader{Address: u.proxy} }

// prepare sends a request through the proxy.
func (u *UA) prepare(req *sip.Request) {
	if req.Route() == nil {
		req.PrependHeader(u.route())
	}
	req.SetTransport(strings.ToUpper(u.cfg.Transport))
	req.SetDestination(u.cfg.Proxy)
}

// do sends a request, answering one digest challenge.
func (u *UA) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	u.prepare(req)
	res, err := u.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if (res.StatusCode == 401 || res.StatusCode == 407) && u.cfg.Username != "" {
		return u.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: u.cfg.Username, Password: u.cfg.Password})
	}
	return res, nil
}

// StatusError is a final non-2xx response.
type StatusError struct {
	Code   int
	Reason string
	Res    *sip.Response
}

func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// PaymentRequired returns the terms of a 402 answer (RFC 3261 reserves
// 402; paysip's server answers it with a Paysip-Terms header to a caller
// without "Supported: paysip"), or ok false for another answer.
func (e *StatusError) PaymentRequired() (t sipext.Terms, ok bool, err error) {
	if e.Code != sip.StatusPaymentRequired || e.Res == nil {
		return t, false, nil
	}
	h := e.Res.GetHeader(sipext.TermsHeader)
	if h == nil {
		return t, true, fmt.Errorf("%w: 402 without %s", sipext.ErrBadTerms, sipext.TermsHeader)
	}
	t, err = sipext.ParseTerms(h.Value())
	return t, true, err
}

// ErrStatus is the former name of StatusError.
//
// Deprecated: use StatusError.
type ErrStatus = StatusError

func statusErr(res *sip.Response) error {
	if res.IsSuccess() {
		return nil
	}
	return &StatusError{Code: res.StatusCode, Reason: res.Reason, Res: res}
}

// Register binds the agent's contact to aor (its own address, or the
// directory's) for expires seconds; 0 removes the binding. It returns the
// bindings the registrar reports.
func (u *UA) register(ctx context.Context, aor sip.Uri, expires int, params [][2]string) ([]*sip.ContactHeader, error) {
	u.mu.Lock()
	u.regCSeq++
	if u.regCallID == "" {
		u.regCallID = sip.GenerateTagN(16)
	}
	seq, callID := u.regCSeq, u.regCallID
	u.mu.Unlock()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: aor.Host})
	to := &sip.ToHeader{Address: aor}
	from := &sip.FromHeader{Address: u.aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(to)
	req.AppendHeader(from)
	cid := sip.CallIDHeader(callID + aor.User)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
	c := u.contact.Clone()
	for _, p := range params {
		v := p[1]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && strings.ContainsAny(v, " \t") {
			// sipgo quotes a value with a space or a tab itself: a
			// quoted one would go out ""doubled"".
			v = v[1 : len(v)-1]
		}
		c.Params.Add(p[0], v)
	}
	req.AppendHeader(c)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res, err := u.do(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := statusErr(res); err != nil {
		return nil, err
	}
	var out []*sip.ContactHeader
	for _, h := range res.GetHeaders("Contact") {
		if ch, ok := h.(*sip.ContactHeader); ok {
			out = append(out, ch)
		}
	}
	return out, nil
}

// Register binds the agent's own address.
func (u *UA) Register(ctx context.Context, expires int) ([]*sip.ContactHeader, error) {
	return u.register(ctx, u.aor, expires, u.cfg.ContactParams)
}

// Offer is what a priced endpoint announces in the directory (an alias
// kept for the packages that still name it here).
//
// Deprecated: use sipext.Offer.
type Offer = sipext.Offer

// directory is the directory's address in the agent's domain.
func (u *UA) directory() sip.Uri {
	return sip.Uri{Scheme: "sip", User: sipext.DirectoryUser, Host: u.aor.Host}
}

// JoinDirectory lists the agent at sip:directory@DOMAIN with its offer.
func (u *UA) JoinDirectory(ctx context.Context, o sipext.Offer, expires int) error {
	_, err := u.register(ctx, u.directory(), expires, o.ContactParams(u.aor.String()))
	return err
}

// KeepRegistered registers now and refreshes at 80% of the expiry until
// ctx ends, then un-registers. join, if set, also keeps the directory
// listing. Errors after the first are logged and retried.
func (u *UA) KeepRegistered(ctx context.Context, expires int, join *sipext.Offer) error {
	refresh := func() error {
		if _, err := u.Register(ctx, expires); err != nil {
			return err
		}
		if join != nil {
			return u.JoinDirectory(ctx, *join, expires)
		}
		return nil
	}
	if err := refresh(); err != nil {
		return err
	}
	u.keepers.Add(1)
	go func() {
		defer u.keepers.Done()
		for {
			select {
			case <-ctx.Done():
			case <-u.stop:
			case <-time.After(time.Duration(expires) * time.Second * 8 / 10):
				if err := refresh(); err != nil {
					u.log.Warn("registration refresh failed", "err", err)
				}
				continue
			}
			// Ended or closing: un-register while the agent still hears.
			bye, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			u.Register(bye, 0)
			if join != nil {
				// With the listing's parameters: the registrar takes a
				// directory contact only naming the account's own
				// address (+paysip.aor), removal included.
				u.register(bye, u.directory(), 0, join.ContactParams(u.aor.String()))
			}
			cancel()
			return
		}
	}()
	return nil
}

// Message sends a MESSAGE outside any dialog.
func (u *UA) Message(ctx context.Context, to sip.Uri, contentType string, body []byte) (*sip.Response, error) {
	req := sip.NewRequest(sip.MESSAGE, to)
	req.AppendHeader(&sip.ToHeader{Address: to})
	from := &sip.FromHeader{Address: u.aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	req.SetBody(body)
	return u.do(ctx, req)
}

// OnMessage sets the handler of MESSAGE requests outside calls; it
// returns the status to answer.
func (u *UA) OnMessage(f func(req *sip.Request) (int, string)) {
	u.mu.Lock()
	u.onMessage = f
	u.mu.Unlock()
}

func (u *UA) handleMessage(req *sip.Request, tx sip.ServerTransaction) {
	u.mu.Lock()
	call := u.calls[req.CallID().Value()]
	f := u.onMessage
	u.mu.Unlock()
	if call != nil {
		call.deliver(req, tx)
		return
	}
	var code int
	var reason string
	switch {
	case req.To() != nil && req.To().Params.Has("tag"):
		// In-dialog (RFC 3261 section 12.2.2) but no such dialog here: it
		// ended, or never was.
		code, reason = sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"
	case f != nil:
		code, reason = f(req)
	default:
		code, reason = sip.StatusMethodNotAllowed, "Method Not Allowed"
	}
	tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
}

// Subscribe sends a SUBSCRIBE (RFC 6665) for event with a body; NOTIFY
// requests of the subscription go to the OnNotify handler.
func (u *UA) Subscribe(ctx context.Context, to sip.Uri, event, contentType string, body []byte, expires int) (*sip.Response, error) {
	req := sip.NewRequest(sip.SUBSCRIBE, to)
	req.AppendHeader(&sip.ToHeader{Address: to})
	from := &sip.FromHeader{Address: u.aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(u.contact.Clone())
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	req.SetBody(body)
	res, err := u.do(ctx, req)
	if err != nil {
		return nil, err
	}
	return res, statusErr(res)
}

// OnNotify sets the handler of NOTIFY requests.
func (u *UA) OnNotify(f func(req *sip.Request)) {
	u.srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		f(req)
	})
}

// Listing is one entry of a server's directory.
//
// Deprecated: use sipext.Listing.
type Listing = sipext.Listing

// FetchDirectory reads the priced endpoints from a paysip server's HTTP
// interface (base like http://127.0.0.1:8080).
func FetchDirectory(ctx context.Context, base string) ([]sipext.Listing, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/directory", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("directory: %s", res.Status)
	}
	d, err := sipext.DecodeDirectory(res.Body)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	return d.Entries, nil
}
