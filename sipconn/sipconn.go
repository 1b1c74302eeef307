// Package sipconn carries the payment protocol inside a SIP call, for
// endpoints without WebRTC: each protocol message is the body of an
// in-dialog MESSAGE (Content-Type application/vnd.paysip+json), answered
// 200 when received. A MessageConn is an agent.Conn.
package sipconn

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/sipua"
)

// MessageConn is an agent.Conn over a call's in-dialog MESSAGEs.
type MessageConn struct {
	call   *sipua.Call
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

var _ agent.Conn = (*MessageConn)(nil)

// New takes over the call's in-dialog MESSAGE handling.
func New(call *sipua.Call) *MessageConn {
	c := &MessageConn{call: call, in: make(chan []byte, 64), closed: make(chan struct{})}
	call.OnMessage(func(req *sip.Request) (int, string) {
		ct := req.ContentType()
		if ct == nil || !strings.HasPrefix(strings.ToLower(ct.Value()), paywire.ContentType) {
			return 415, "Unsupported Media Type"
		}
		if len(req.Body()) > paywire.MaxMessageSize {
			return 413, "Request Entity Too Large"
		}
		select {
		case c.in <- append([]byte(nil), req.Body()...):
			return 200, "OK"
		case <-c.closed:
			return 481, "Call/Transaction Does Not Exist"
		default:
			return 503, "Service Unavailable" // the peer floods; one message in flight is the rule
		}
	})
	return c
}

// Send implements agent.Conn: one MESSAGE, sent and answered.
func (c *MessageConn) Send(ctx context.Context, msg []byte) error {
	select {
	case <-c.closed:
		return agent.ErrConnClosed
	case <-c.call.Done():
		return agent.ErrConnClosed
	default:
	}
	if _, err := c.call.Message(ctx, paywire.ContentType, msg); err != nil {
		return fmt.Errorf("%w: %v", agent.ErrConnClosed, err)
	}
	return nil
}

// Recv implements agent.Conn. The call ending closes the connection.
func (c *MessageConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-c.closed:
		return nil, agent.ErrConnClosed
	case <-c.call.Done():
		select {
		case m := <-c.in:
			return m, nil
		default:
		}
		return nil, agent.ErrConnClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close implements agent.Conn; the call itself is left to its owner.
func (c *MessageConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
