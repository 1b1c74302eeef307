// Package agent runs paysip's payer and payee over a message transport, with
// a wallet, a chain and a durable store: it carries out, in order, the
// effects that the pure channel state machines return. It is the edge
// between package channel and the world.
//
// The transport is a Conn: an in-memory Pipe here; WebRTC DataChannels and
// SIP MESSAGE dialogs implement the same interface.
package agent

import (
	"context"
	"errors"
	"sync"
)

// Conn carries protocol messages, one paywire message per Send.
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

// ErrConnClosed is returned by a closed Conn (the peer went away).
var ErrConnClosed = errors.New("connection closed")

// Pipe returns two connected in-memory Conns.
func Pipe() (Conn, Conn) {
	ab, ba := make(chan []byte, 64), make(chan []byte, 64)
	done := make(chan struct{})
	var once sync.Once
	closeFn := func() { once.Do(func() { close(done) }) }
	return &pipeEnd{in: ba, out: ab, done: done, close: closeFn}, &pipeEnd{in: ab, out: ba, done: done, close: closeFn}
}

type pipeEnd struct {
	in, out chan []byte
	done    chan struct{}
	close   func()
}

func (p *pipeEnd) Send(ctx context.Context, msg []byte) error {
	select {
	case <-p.done:
		return ErrConnClosed
	default:
	}
	select {
	case p.out <- append([]byte(nil), msg...):
		return nil
	case <-p.done:
		return ErrConnClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pipeEnd) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-p.in:
		return m, nil
	case <-p.done:
		// Deliver what was sent before the close.
		select {
		case m := <-p.in:
			return m, nil
		default:
		}
		return nil, ErrConnClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipeEnd) Close() error { p.close(); return nil }
