package agent

import (
	"context"

	"github.com/paysip/paysip/store"
)

// Store is the channel storage the agents need. store.DB is the
// implementation, on SQLite or on PostgreSQL (several payee processes
// sharing one database: StartClosing makes exactly one of them the
// closer). Every write must be durable when it returns: that is what
// makes an ack, or a funding broadcast, safe.
type Store interface {
	Insert(ctx context.Context, r store.Record) error
	Get(ctx context.Context, id string) (*store.Record, error)
	List(ctx context.Context, states ...store.State) ([]*store.Record, error)
	PayerSigned(ctx context.Context, id string, signed int64, sig []byte) error
	PayerAcked(ctx context.Context, id string, acked int64) error
	PayeePayment(ctx context.Context, id string, paid int64, sig []byte) error
	SetState(ctx context.Context, id string, state store.State, closeTxID string) error
	// StartClosing moves an open channel to closing and returns it; from
	// then on PayeePayment refuses (store.ErrNotStored) so nothing is
	// acknowledged that the settlement does not carry.
	StartClosing(ctx context.Context, id string) (*store.Record, error)
}

var _ Store = (*store.DB)(nil)
