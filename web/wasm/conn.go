//go:build js && wasm

package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall/js"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/paywire"
)

// connQueue bounds the messages received and not yet read: a peer sending
// faster than the protocol reads is closed, not buffered without end.
const connQueue = 64

// jsConn is an agent.Conn over the page's transport: Send calls the
// page's sendFn with a Uint8Array (the page writes it to the
// RTCDataChannel or a SIP MESSAGE), and the page delivers each incoming
// message with receive().
type jsConn struct {
	send   js.Value
	in     chan []byte
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	reason string
}

// ErrFlood: the peer sent more than connQueue messages unread.
var ErrFlood = errors.New("peer sent messages faster than the protocol reads them")

func newJSConn(send js.Value) *jsConn {
	return &jsConn{send: send, in: make(chan []byte, connQueue), done: make(chan struct{})}
}

// Send implements agent.Conn.
func (c *jsConn) Send(ctx context.Context, msg []byte) (err error) {
	select {
	case <-c.done:
		return agent.ErrConnClosed
	default:
	}
	defer func() {
		if r := recover(); r != nil { // sendFn threw
			err = fmt.Errorf("%w: sending: %v", agent.ErrConnClosed, r)
		}
	}()
	buf := js.Global().Get("Uint8Array").New(len(msg))
	js.CopyBytesToJS(buf, msg)
	c.send.Invoke(buf)
	return nil
}

// Recv implements agent.Conn.
func (c *jsConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-c.done:
		select { // deliver what came before the close
		case m := <-c.in:
			return m, nil
		default:
		}
		return nil, c.closedErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *jsConn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != "" {
		return fmt.Errorf("%w: %s", agent.ErrConnClosed, c.reason)
	}
	return agent.ErrConnClosed
}

// Close implements agent.Conn.
func (c *jsConn) Close() error { c.close(""); return nil }

func (c *jsConn) close(reason string) {
	c.once.Do(func() {
		c.mu.Lock()
		c.reason = reason
		c.mu.Unlock()
		close(c.done)
	})
}

// receive takes one message from the page, without blocking (it runs in
// the page's callback): a message above paywire's size limit, or one
// more than the queue holds, closes the connection.
func (c *jsConn) receive(v js.Value) error {
	var b []byte
	switch {
	case v.Type() == js.TypeString:
		b = []byte(v.String())
	case v.InstanceOf(js.Global().Get("Uint8Array")):
		b = make([]byte, v.Length())
		js.CopyBytesToGo(b, v)
	case v.InstanceOf(js.Global().Get("ArrayBuffer")):
		u := js.Global().Get("Uint8Array").New(v)
		b = make([]byte, u.Length())
		js.CopyBytesToGo(b, u)
	default:
		return badRequest("receive takes a Uint8Array, an ArrayBuffer or a string")
	}
	if len(b) > paywire.MaxMessageSize {
		c.close("message too large")
		return badRequest("message of %d bytes > %d", len(b), paywire.MaxMessageSize)
	}
	select {
	case <-c.done:
		return nil // closed: dropped, as a closed DataChannel drops
	default:
	}
	select {
	case c.in <- b:
		return nil
	default:
		c.close(ErrFlood.Error())
		return ErrFlood
	}
}

// conns are the page's open connections, by the id their JS object
// carries (pay and serve find their Conn by it); at most maxConns.
var conns = struct {
	sync.Mutex
	next int
	m    map[int]*jsConn
}{m: map[int]*jsConn{}}

const maxConns = 64

// newConn is paysip.conn(sendFn).
func newConn(this js.Value, args []js.Value) any {
	send := arg(args, 0)
	if send.Type() != js.TypeFunction {
		return throw(badRequest("conn(sendFn): sendFn must be a function"))
	}
	conns.Lock()
	if len(conns.m) >= maxConns {
		conns.Unlock()
		return throw(badRequest("more than %d connections open: close some", maxConns))
	}
	conns.next++
	id := conns.next
	c := newJSConn(send)
	conns.m[id] = c
	conns.Unlock()
	obj := js.Global().Get("Object").New()
	obj.Set("id", id)
	obj.Set("receive", js.FuncOf(func(_ js.Value, a []js.Value) any {
		if err := c.receive(arg(a, 0)); err != nil {
			js.Global().Get("console").Call("warn", "paysip: conn.receive:", err.Error())
		}
		return nil
	}))
	obj.Set("close", js.FuncOf(func(_ js.Value, a []js.Value) any {
		reason := ""
		if r := arg(a, 0); r.Type() == js.TypeString {
			reason = r.String()
		}
		c.close(reason)
		conns.Lock()
		delete(conns.m, id)
		conns.Unlock()
		return nil
	}))
	return obj
}

// connOf finds the Conn of a conn object.
func connOf(o js.Value) (*jsConn, error) {
	v := opt(o, "conn")
	if v.Type() != js.TypeObject || v.Get("id").Type() != js.TypeNumber {
		return nil, badRequest("conn must be an object made by paysip.conn")
	}
	conns.Lock()
	defer conns.Unlock()
	c := conns.m[v.Get("id").Int()]
	if c == nil {
		return nil, badRequest("conn is closed")
	}
	return c, nil
}

// throw returns an Error for a synchronous API (conn): JS sees it thrown
// by the wrapper in main.
func throw(err error) any {
	return map[string]any{"__paysipError": jsError(err)}
}
