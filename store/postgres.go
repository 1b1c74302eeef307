//go:build !(js && wasm)

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens a PostgreSQL store (pgx through database/sql, so that
// both databases share one code path). Every connection is checked to be
// durable before use: fsync on, and synchronous_commit not off (a commit
// returns only once its WAL is flushed to disk, as the money rules need).
// Several paysip processes may share the database: the schema is migrated
// under an advisory lock, a payment racing a settlement is decided by row
// locks, and each handle holds an owner lock (claims.go) that says which
// process settles a closing channel.
func openPostgres(dsn string) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres dsn: %w", err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "paysip"
	}
	db := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(checkPostgresDurability))
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := migrateDialect(db, postgresDialect, SchemaVersion); err != nil {
		db.Close()
		return nil, err
	}
	o, err := newPgOwner(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return start(db, postgresDialect, o), nil
}

// checkPostgresDurability refuses a connection on which a commit could
// return before it is on disk.
func checkPostgresDurability(ctx context.Context, c *pgx.Conn) error {
	var fsync, syncCommit string
	if err := c.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('synchronous_commit')").Scan(&fsync, &syncCommit); err != nil {
		return err
	}
	if fsync != "on" {
		return fmt.Errorf("store not durable: postgres fsync=%s, want on", fsync)
	}
	switch syncCommit {
	case "on", "remote_apply", "remote_write", "local":
		// All wait for the local WAL flush before a commit returns.
	default:
		return fmt.Errorf("store not durable: postgres synchronous_commit=%s, want on", syncCommit)
	}
	return nil
}

// retryable says whether a write failed only because it lost a lock
// conflict with another transaction, and may simply run again.
func (dl *dialect) retryable(err error) bool {
	if dl != postgresDialect {
		return false
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03": // lock_not_available
		return true
	}
	return false
}

// ownerLockClass is the first key of the owner advisory locks ("PSIP").
const ownerLockClass = int32(ApplicationID)

// pgOwner is a Postgres store handle's identity among the processes
// sharing the database: a number held as a session advisory lock on a
// connection of its own for as long as the handle is open. Postgres drops
// the lock when that session ends, and so when the process dies, at once:
// a claim by an owner whose lock nobody holds is void (claims.go).
type pgOwner struct {
	mu   sync.Mutex
	db   *sql.DB
	id   int32
	conn *sql.Conn
}

func newPgOwner(ctx context.Context, db *sql.DB) (*pgOwner, error) {
	o := &pgOwner{db: db}
	for range 100 {
		o.id = rand.Int32N(1<<31-1) + 1
		ok, err := o.lock(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			return o, nil
		}
	}
	return nil, errors.New("postgres: no free owner id")
}

// lock takes the owner lock on a new connection of its own.
func (o *pgOwner) lock(ctx context.Context) (bool, error) {
	conn, err := o.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1, $2)", ownerLockClass, o.id).Scan(&ok); err != nil || !ok {
		conn.Close()
		return false, err
	}
	o.conn = conn
	return true, nil
}

// ensure checks that the owner lock is still held (its connection may
// have broken, or the server restarted: the lock went with the session),
// and takes it again if not, before the handle claims a channel. Claims
// made under the lost lock were void meanwhile: another member may have
// taken them over, and claim will see it.
func (o *pgOwner) ensure(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var held bool
	if o.conn != nil {
		err := o.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND pid = pg_backend_pid() AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2)`,
			int64(uint32(ownerLockClass)), int64(o.id)).Scan(&held)
		if err == nil && held {
			return nil
		}
		o.conn.Close()
		o.conn = nil
	}
	ok, err := o.lock(ctx)
	if err != nil {
		return fmt.Errorf("postgres owner lock: %w", err)
	}
	if !ok {
		return fmt.Errorf("postgres owner lock %d is held by another session", o.id)
	}
	return nil
}

func (o *pgOwner) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1, $2)", ownerLockClass, o.id)
	o.conn.Close()
	o.conn = nil
}

func (o *pgOwner) ID() int64 { return int64(o.id) }

// Alive says whether the store handle id still holds its owner lock.
// Read from pg_locks inside the claiming transaction, under the channel's
// row lock.
func (o *pgOwner) Alive(tx *txn, id int64) (bool, error) {
	var alive bool
	err := tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid::bigint = ? AND objid::bigint = ? AND objsubid = 2)`, int64(uint32(ownerLockClass)), id).Scan(&alive)
	return alive, err
}
