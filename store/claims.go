package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// owner is a store handle's identity among the processes sharing its
// database, alive exactly as long as the handle is open and its process
// runs: a Postgres session advisory lock (postgres.go), or a lock on a
// byte of a file beside the SQLite database (owner_linux.go). Whoever
// holds a closing channel's claim settles it; a claim whose owner is gone
// is void.
type owner interface {
	ID() int64
	// Alive says whether owner id still holds its lock, read inside tx.
	Alive(tx *txn, id int64) (bool, error)
	// ensure takes the handle's own lock again if it was lost.
	ensure(ctx context.Context) error
	release()
}

// ErrClaimed: the channel is being closed by another store handle (another
// member of a payee fleet sharing a Postgres store) that is still alive.
// That one settles it; this one must not.
var ErrClaimed = errors.New("channel is being closed by another paysip process")

// forUpdate is the row lock clause of a read that decides a write.
// SQLite has none: its transactions begin IMMEDIATE (dsn), holding the
// database's write lock from their first statement.
func (dl *dialect) forUpdate() string {
	if dl == postgresDialect {
		return " FOR UPDATE"
	}
	return ""
}

// claim makes this handle the closer of channel id, read in tx under its
// row lock with its state and current closer. An open channel moves to
// closing. A closing channel is taken over only if its closer is this
// handle, none, or a handle whose owner lock nobody holds any more (its
// process ended): the claim is decided by the database, in the
// transaction, not by a flag read earlier. Settled and refunded channels
// are left as they are (the caller finds them spent on chain).
//
// A store without owners (SQLite where the platform has no open file
// description locks) lets every handle close.
func (d *DB) claim(tx *txn, id string, state State, closer int64) error {
	var me int64
	if d.owner != nil {
		me = d.owner.ID()
	}
	switch state {
	case StateOpen:
		_, err := tx.Exec("UPDATE channels SET state = 'closing', closing_owner = ?, updated_at = ? WHERE id = ?", me, nowUnix(), id)
		return err
	case StateClosing:
		if closer == me {
			return nil
		}
		if closer != 0 && d.owner != nil {
			alive, err := d.owner.Alive(tx, closer)
			if err != nil {
				return err
			}
			if alive {
				return fmt.Errorf("%w: %s", ErrClaimed, id)
			}
		}
		_, err := tx.Exec("UPDATE channels SET closing_owner = ? WHERE id = ?", me, id)
		return err
	}
	return nil
}

func nowUnix() int64 { return time.Now().Unix() }
