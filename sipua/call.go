package sipua

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Call is an established call, either direction.
type Call struct {
	ua        *UA
	id        string
	out       *sipgo.DialogClientSession
	in        *sipgo.DialogServerSession
	RemoteSDP []byte
	// Response is the 2xx that answered an outgoing call (its headers).
	Response *sip.Response
	// Request is the INVITE of an incoming call.
	Request *sip.Request

	mu        sync.Mutex
	byeReason string
	onMessage func(req *sip.Request) (int, string)
	handler   chan struct{} // closed when onMessage is set
	done      chan struct{}
	once      sync.Once
	localSDP  []byte
}

func (c *Call) dialog() *sipgo.Dialog {
	if c.out != nil {
		return &c.out.Dialog
	}
	return &c.in.Dialog
}

// Done is closed when the call ends (BYE either way, or failure).
func (c *Call) Done() <-chan struct{} { return c.done }

func (c *Call) end() {
	c.once.Do(func() {
		close(c.done)
		c.ua.mu.Lock()
		delete(c.ua.calls, c.id)
		c.ua.mu.Unlock()
	})
}

// OnMessage sets the handler of in-dialog MESSAGE requests.
func (c *Call) OnMessage(f func(req *sip.Request) (int, string)) {
	c.mu.Lock()
	first := c.onMessage == nil
	c.onMessage = f
	c.mu.Unlock()
	if first && f != nil {
		close(c.handler)
	}
}

// HandlerWait is how long an in-dialog MESSAGE that arrives before the
// call's owner has set its handler waits for one. The other side may send
// as soon as it has the 200 (the caller) or the ACK (the callee), which can
// be before this side's application has taken the call over.
const HandlerWait = 5 * time.Second

func (c *Call) deliver(req *sip.Request, tx sip.ServerTransaction) {
	select {
	case <-c.handler:
	case <-c.done:
	case <-time.After(HandlerWait):
	}
	c.mu.Lock()
	f := c.onMessage
	c.mu.Unlock()
	code, reason := sip.StatusMethodNotAllowed, "Method Not Allowed"
	switch {
	case f != nil:
		code, reason = f(req)
	case c.ended():
		code, reason = sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"
	}
	tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
}

func (c *Call) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Message sends an in-dialog MESSAGE.
func (c *Call) Message(ctx context.Context, contentType string, body []byte) (*sip.Response, error) {
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{})
	req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	req.SetBody(body)
	var res *sip.Response
	var err error
	if c.out != nil {
		req.Recipient = c.out.InviteResponse.Contact().Address
		res, err = c.out.Do(ctx, req)
	} else {
		req.Recipient = c.in.InviteRequest.Contact().Address
		res, err = c.in.Do(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return res, statusErr(res)
}

// Hangup ends the call with BYE.
func (c *Call) Hangup(ctx context.Context) error { return c.HangupWithReason(ctx, "") }

// HangupWithReason ends the call with a BYE carrying a Reason header
// (RFC 3326), e.g. `SIP;cause=402;text="payment late"`.
func (c *Call) HangupWithReason(ctx context.Context, reason string) error {
	defer c.end()
	if reason == "" {
		if c.out != nil {
			return c.out.Bye(ctx)
		}
		return c.in.Bye(ctx)
	}
	if c.out != nil {
		bye := sip.NewRequest(sip.BYE, c.out.InviteResponse.Contact().Address)
		bye.SetTransport(c.out.InviteRequest.Transport())
		bye.AppendHeader(sip.NewHeader("Reason", reason))
		return c.out.WriteBye(ctx, bye)
	}
	bye := sip.NewRequest(sip.BYE, c.in.InviteRequest.Contact().Address)
	bye.SetTransport(c.in.InviteRequest.Transport())
	bye.AppendHeader(sip.NewHeader("Reason", reason))
	return c.in.WriteBye(ctx, bye)
}

// HangupReason is the Reason header of the BYE that ended the call, if
// the other side gave one.
func (c *Call) HangupReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byeReason
}

// Call places a call through the proxy: INVITE with sdp, waits for the
// answer (answering a digest challenge), ACKs it. Cancelling ctx before
// the answer sends CANCEL.
func (u *UA) Call(ctx context.Context, to sip.Uri, sdp []byte, headers ...sip.Header) (*Call, error) {
	req := sip.NewRequest(sip.INVITE, to)
	req.AppendHeader(&sip.ToHeader{Address: to})
	from := &sip.FromHeader{Address: u.aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	if sdp != nil {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(sdp)
	}
	for _, h := range headers {
		req.AppendHeader(h)
	}
	u.prepare(req)
	sess, err := u.dcli.WriteInvite(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: u.cfg.Username, Password: u.cfg.Password}); err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return nil, &StatusError{Code: de.Res.StatusCode, Reason: de.Res.Reason, Res: de.Res}
		}
		return nil, err
	}
	if err := sess.Ack(ctx); err != nil {
		return nil, err
	}
	c := &Call{ua: u, id: req.CallID().Value(), out: sess, RemoteSDP: sess.InviteResponse.Body(), Response: sess.InviteResponse, done: make(chan struct{}), handler: make(chan struct{}), localSDP: sdp}
	u.mu.Lock()
	u.calls[c.id] = c
	u.mu.Unlock()
	go func() {
		<-sess.Context().Done()
		c.end()
	}()
	return c, nil
}

// IncomingCall is an INVITE waiting for an answer. The OnInvite handler
// must Answer or Reject it before returning.
type IncomingCall struct {
	Request  *sip.Request
	ua       *UA
	sess     *sipgo.DialogServerSession
	call     *Call
	canceled chan struct{}
}

// Canceled is closed when the caller cancels the call before it is
// answered (the transaction layer has already answered 487).
func (ic *IncomingCall) Canceled() <-chan struct{} { return ic.canceled }

// Ring sends 180 Ringing.
func (ic *IncomingCall) Ring() error { return ic.sess.Respond(180, "Ringing", nil) }

// Answer accepts the call with an SDP answer.
func (ic *IncomingCall) Answer(sdp []byte, headers ...sip.Header) (*Call, error) {
	hdrs := append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp")}, headers...)
	hdrs = append(hdrs, ic.ua.contact.Clone())
	// The call is known before the 200 leaves: the caller may send an
	// in-dialog MESSAGE as soon as it has it.
	c := &Call{ua: ic.ua, id: ic.Request.CallID().Value(), in: ic.sess, RemoteSDP: ic.Request.Body(), Request: ic.Request, done: make(chan struct{}), handler: make(chan struct{}), localSDP: sdp}
	ic.ua.mu.Lock()
	ic.ua.calls[c.id] = c
	ic.ua.mu.Unlock()
	if err := ic.sess.Respond(sip.StatusOK, "OK", sdp, hdrs...); err != nil {
		c.end()
		return nil, err
	}
	go func() {
		<-ic.sess.Context().Done()
		c.end()
	}()
	ic.call = c
	return c, nil
}

// Reject refuses the call.
func (ic *IncomingCall) Reject(code int, reason string, headers ...sip.Header) error {
	return ic.sess.Respond(code, reason, nil, headers...)
}

// OnInvite sets the handler of incoming calls.
func (u *UA) OnInvite(f func(*IncomingCall)) {
	u.mu.Lock()
	u.onInvite = f
	u.mu.Unlock()
}

func (u *UA) handleInvite(req *sip.Request, tx sip.ServerTransaction) {
	u.mu.Lock()
	f := u.onInvite
	existing := u.calls[req.CallID().Value()]
	u.mu.Unlock()
	if existing != nil {
		// A re-INVITE (session refresh, hold): answer with the same SDP.
		res := sip.NewResponseFromRequest(req, 200, "OK", existing.localSDP)
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.AppendHeader(u.contact.Clone())
		tx.Respond(res)
		return
	}
	sess, err := u.dsrv.ReadInvite(req, tx)
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	if f == nil {
		sess.Respond(480, "Temporarily Unavailable", nil)
		return
	}
	ic := &IncomingCall{Request: req, ua: u, sess: sess, canceled: make(chan struct{})}
	var once sync.Once
	tx.OnCancel(func(*sip.Request) { once.Do(func() { close(ic.canceled) }) })
	f(ic)
	if ic.call == nil {
		return
	}
	// Keep the transaction until the ACK arrives (it ends in ReadAck).
	select {
	case <-tx.Acks():
	case <-tx.Done():
	case <-ic.call.done:
	}
}

func (u *UA) handleBye(req *sip.Request, tx sip.ServerTransaction) {
	u.mu.Lock()
	c := u.calls[req.CallID().Value()]
	u.mu.Unlock()
	if c == nil {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if r := req.GetHeader("Reason"); r != nil {
		c.mu.Lock()
		c.byeReason = r.Value()
		c.mu.Unlock()
	}
	var err error
	if c.out != nil {
		err = c.out.ReadBye(req, tx)
	} else {
		err = c.in.ReadBye(req, tx)
	}
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}
	c.end()
}
