// Package store keeps paysip's channels durably: an embedded SQLite
// database (modernc.org/sqlite, pure Go) in WAL mode with synchronous=FULL,
// one file in the node's data directory.
//
// Every write is durable when its call returns: that is what lets a payee
// acknowledge a payment and a payer broadcast its funding. Writes from many
// channels are committed in groups by one writer goroutine (many payments,
// one fsync), so durability does not cost an fsync per payment.
//
// The schema is versioned (PRAGMA user_version) with ordered migrations;
// the file is marked as paysip's (PRAGMA application_id) so a foreign
// SQLite file is refused, and so is a file from a newer paysip.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// ApplicationID marks a paysip database ("PSIP").
const ApplicationID = 0x50534950

// Errors.
var (
	ErrForeign   = errors.New("not a paysip database")
	ErrTooNew    = errors.New("database written by a newer paysip")
	ErrNotFound  = errors.New("channel not found")
	ErrClosed    = errors.New("store closed")
	ErrNotStored = errors.New("write not stored")
)

// DB is an open store. It is safe for concurrent use.
type DB struct {
	db     *sql.DB
	writes chan *writeReq
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	// MaxBatch bounds a group commit.
	maxBatch int
}

type writeReq struct {
	op   func(*sql.Tx) error
	done chan error
}

// Open opens (creating if absent) the store at path and brings its schema
// up to date. A file that is not SQLite, is another application's database,
// or comes from a newer paysip is refused and left untouched.
func Open(path string) (*DB, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := checkHeader(path); err != nil {
			return nil, err
		}
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, err
	}
	if err := checkDurability(db); err != nil {
		db.Close()
		return nil, err
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, err
	}
	d := &DB{db: db, writes: make(chan *writeReq, 4096), stop: make(chan struct{}), done: make(chan struct{}), maxBatch: 512}
	go d.writer()
	return d, nil
}

// dsn is the SQLite URI of path, with the pragmas every connection gets.
// The path is percent-escaped: a '#' or '?' in it would otherwise end the
// file name, and drop the pragmas with it.
func dsn(path string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
}

// checkDurability refuses to run without WAL and synchronous=FULL: the
// money rules rest on a commit being on disk when it returns.
func checkDurability(db *sql.DB) error {
	var mode string
	var sync int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("%w: %v", ErrForeign, err)
	}
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	if mode != "wal" || sync != 2 {
		return fmt.Errorf("store not durable: journal_mode=%s synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
	return nil
}

// checkHeader refuses a non-SQLite file before the driver touches it.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 16)
	if _, err := f.Read(hdr); err != nil || string(hdr) != "SQLite format 3\x00" {
		return fmt.Errorf("%w: %s is not an SQLite file", ErrForeign, path)
	}
	return nil
}

// Close stops the writer (after the writes under way) and closes the file.
// Calling it again is harmless.
func (d *DB) Close() error {
	var err error
	d.once.Do(func() {
		close(d.stop)
		<-d.done
		err = d.db.Close()
	})
	return err
}

// write queues op for the next group commit and waits until it is durable.
func (d *DB) write(ctx context.Context, op func(*sql.Tx) error) error {
	r := &writeReq{op: op, done: make(chan error, 1)}
	select {
	case d.writes <- r:
	case <-d.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, wait for the outcome even if ctx ends: the caller must
	// know whether it is stored. A write queued as the store closes (the
	// select above may pick the queue over the closed stop) is answered
	// by the writer's last drain, or never was taken: the writer is gone.
	select {
	case err := <-r.done:
		return err
	case <-d.done:
		select {
		case err := <-r.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// writer commits queued writes in groups: one transaction, one fsync, each
// write in its own savepoint so one failing write does not undo others.
func (d *DB) writer() {
	defer close(d.done)
	for {
		var first *writeReq
		select {
		case first = <-d.writes:
		case <-d.stop:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-d.writes:
					d.commit([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch := []*writeReq{first}
	fill:
		for len(batch) < d.maxBatch {
			select {
			case r := <-d.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		d.commit(batch)
	}
}

func (d *DB) commit(batch []*writeReq) {
	errs := make([]error, len(batch))
	tx, err := d.db.Begin()
	if err != nil {
		for _, r := range batch {
			r.done <- notStored(err)
		}
		return
	}
	for i, r := range batch {
		if _, err := tx.Exec("SAVEPOINT w"); err != nil {
			errs[i] = err
			continue
		}
		if err := r.op(tx); err != nil {
			errs[i] = notStored(err)
			tx.Exec("ROLLBACK TO w")
		}
		tx.Exec("RELEASE w")
	}
	if err := tx.Commit(); err != nil {
		for _, r := range batch {
			r.done <- notStored(err)
		}
		return
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// notStored wraps a failed write, with a hint when the disk is the cause.
func notStored(err error) error {
	if errors.Is(err, ErrNotStored) || errors.Is(err, ErrNotFound) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "disk I/O error") || strings.Contains(msg, "full") {
		return fmt.Errorf("%w (disk full or failing?): %w", ErrNotStored, err)
	}
	return fmt.Errorf("%w: %w", ErrNotStored, err)
}

// migrations bring the schema from version i to i+1. Append only: a
// released migration never changes. The SQL stays portable (plain types,
// no SQLite-only constructs beyond what Postgres also accepts) so that a
// server database can follow.
var migrations = []string{
	// 0 -> 1: channels.
	`CREATE TABLE channels (
		id              TEXT PRIMARY KEY,      -- funding outpoint txid:vout
		role            TEXT NOT NULL CHECK (role IN ('payer', 'payee')),
		state           TEXT NOT NULL,
		peer            TEXT NOT NULL DEFAULT '',
		key_index       BIGINT NOT NULL,       -- wallet channel key index
		capacity_sat    BIGINT NOT NULL,
		expiry_height   BIGINT NOT NULL,
		payer_key       BLOB NOT NULL,
		payee_key       BLOB NOT NULL,
		payer_script    BLOB NOT NULL,
		funding_tx      BLOB NOT NULL,
		refund_tx       BLOB,                  -- payer: complete refund
		signed_sat      BIGINT NOT NULL DEFAULT 0, -- payer: highest signed
		acked_sat       BIGINT NOT NULL DEFAULT 0, -- payer: highest acknowledged
		best_sat        BIGINT NOT NULL DEFAULT 0, -- payee: best held
		best_sig        BLOB,                  -- payee: its signature; payer: signature of signed_sat
		close_txid      TEXT NOT NULL DEFAULT '',
		created_at      BIGINT NOT NULL,
		updated_at      BIGINT NOT NULL
	);
	CREATE INDEX channels_state ON channels (state);`,
	// 1 -> 2: SIP accounts. Only the digest HA1 values are kept, one per
	// algorithm, never the password.
	`CREATE TABLE users (
		name        TEXT PRIMARY KEY,
		realm       TEXT NOT NULL,
		ha1_md5     TEXT NOT NULL,
		ha1_sha256  TEXT NOT NULL,
		created_at  BIGINT NOT NULL
	);`,
	// 2 -> 3: SIP accounts per (name, realm): the same name may exist in
	// several domains, and an account made in the wrong one can be
	// removed without touching the right one.
	`CREATE TABLE users_by_realm (
		name        TEXT NOT NULL,
		realm       TEXT NOT NULL,
		ha1_md5     TEXT NOT NULL,
		ha1_sha256  TEXT NOT NULL,
		created_at  BIGINT NOT NULL,
		PRIMARY KEY (name, realm)
	);
	INSERT INTO users_by_realm (name, realm, ha1_md5, ha1_sha256, created_at)
		SELECT name, realm, ha1_md5, ha1_sha256, created_at FROM users;
	DROP TABLE users;
	ALTER TABLE users_by_realm RENAME TO users;`,
}

// SchemaVersion is the version this paysip writes.
var SchemaVersion = len(migrations)

func migrate(db *sql.DB) error { return migrateTo(db, SchemaVersion) }

// migrateTo applies the migrations up to version target.
func migrateTo(db *sql.DB, target int) error {
	var appID, version int
	if err := db.QueryRow("PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("%w: %v", ErrForeign, err)
	}
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	var tables int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master").Scan(&tables); err != nil {
		return fmt.Errorf("%w: %v", ErrForeign, err)
	}
	switch {
	case appID == 0 && tables == 0 && version == 0:
		if _, err := db.Exec(fmt.Sprintf("PRAGMA application_id = %d", ApplicationID)); err != nil {
			return err
		}
	case appID != ApplicationID:
		return fmt.Errorf("%w: application id %#x", ErrForeign, appID)
	case version > SchemaVersion:
		return fmt.Errorf("%w: schema version %d, this paysip knows up to %d", ErrTooNew, version, SchemaVersion)
	}
	for v := version; v < target; v++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for _, stmt := range strings.Split(migrations[v], ";\n") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.Exec(stmt); err != nil {
				tx.Rollback()
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	return nil
}
