package store

import (
	"errors"
	"fmt"
	"time"
)

// ErrClaimed: the channel is being closed by another store handle (another
// member of a payee fleet sharing a Postgres store) that is still alive.
// That one settles it; this one must not.
var ErrClaimed = errors.New("channel is being closed by another paysip process")

// forUpdate is the row lock clause of a read that decides a write.
// SQLite has none: its one writer per database already serialises the
// transactions that write.
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
// SQLite stores have no owners (one machine, one process writes): every
// handle may close.
func (d *DB) claim(tx *txn, id string, state State, closer int64) error {
	var me int64
	if d.owner != nil {
		me = int64(d.owner.id)
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
			alive, err := ownerAlive(tx, closer)
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
