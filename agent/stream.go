package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/paysip/paysip/paywire"
)

// StreamConn carries messages over a byte stream (a TCP connection): each
// message is preceded by its length as a 4-byte big-endian integer. A
// length above paywire.MaxMessageSize ends the connection.
type StreamConn struct {
	c    net.Conn
	wmu  sync.Mutex
	rmu  sync.Mutex
	once sync.Once
}

// NewStreamConn wraps a connection.
func NewStreamConn(c net.Conn) *StreamConn { return &StreamConn{c: c} }

// Send implements Conn.
func (s *StreamConn) Send(ctx context.Context, msg []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if d, ok := ctx.Deadline(); ok {
		s.c.SetWriteDeadline(d)
	}
	buf := make([]byte, 4+len(msg))
	binary.BigEndian.PutUint32(buf, uint32(len(msg)))
	copy(buf[4:], msg)
	_, err := s.c.Write(buf)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConnClosed, err)
	}
	return nil
}

// Recv implements Conn. A ctx ending unblocks it by closing the connection.
func (s *StreamConn) Recv(ctx context.Context) ([]byte, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var hdr [4]byte
	if _, err := io.ReadFull(s.c, hdr[:]); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrConnClosed, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > paywire.MaxMessageSize {
		s.Close()
		return nil, fmt.Errorf("%w: frame of %d bytes", paywire.ErrTooLarge, n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(s.c, msg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnClosed, errors.Join(err, ctx.Err()))
	}
	return msg, nil
}

// Close implements Conn.
func (s *StreamConn) Close() error {
	var err error
	s.once.Do(func() { err = s.c.Close() })
	return err
}
