package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/paysip/paysip/paywire"
)

func TestStreamConn(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := NewStreamConn(a), NewStreamConn(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go ca.Send(ctx, []byte(`{"v":1}`))
	if m, err := cb.Recv(ctx); err != nil || string(m) != `{"v":1}` {
		t.Fatalf("%q %v", m, err)
	}
	// A frame announcing more than a message may be ends the connection.
	go func() {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], paywire.MaxMessageSize+1)
		a.Write(hdr[:])
	}()
	if _, err := cb.Recv(ctx); !errors.Is(err, paywire.ErrTooLarge) {
		t.Fatalf("oversize frame: %v", err)
	}
}

// FuzzStreamConn: any byte stream from a peer yields messages or an error,
// never a panic or a message above the size limit.
func FuzzStreamConn(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		a, b := net.Pipe()
		go func() { a.Write(stream); a.Close() }()
		c := NewStreamConn(b)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for {
			m, err := c.Recv(ctx)
			if err != nil {
				return
			}
			if len(m) > paywire.MaxMessageSize || !bytes.Contains(stream, m) {
				t.Fatalf("message of %d bytes not from the stream", len(m))
			}
		}
	})
}
