// Package store keeps paysip's state durably: channels, SIP accounts,
// registrations (bindings) and secrets the nodes share. It runs on an
// embedded SQLite database (modernc.org/sqlite, pure Go) in WAL mode with
// synchronous=FULL, one file in the node's data directory, or on a
// PostgreSQL database (pgx) that several paysip processes share; one code
// path, one set of migrations, the few differences in dialect.go.
//
// Every write is durable when its call returns: that is what lets a payee
// acknowledge a payment and a payer broadcast its funding. Writes from many
// channels are committed in groups by one writer goroutine (many payments,
// one fsync), so durability does not cost an fsync per payment.
//
// The schema is versioned (SQLite: PRAGMA user_version; Postgres: the
// paysip_meta table) with ordered migrations; the database is marked as
// paysip's (PRAGMA application_id, paysip_meta) so a foreign database is
// refused, and so is one from a newer paysip.
//
// Processes sharing a database settle each channel once: the handle that
// starts closing a channel owns it until it closes or dies (claims.go).
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
	db      *sql.DB
	dialect *dialect
	writes  chan *writeReq
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	// MaxBatch bounds a group commit.
	maxBatch int
	// owner is this handle's identity for the channels it closes
	// (claims.go); nil: none.
	owner owner
	// hot holds the statements of the per-payment writes prepared once
	// (stmts.go): parsing their SQL on every payment cost as much as
	// executing it.
	hot hotStmts
}

type writeReq struct {
	op   func(*txn) error
	done chan error
}

// Open opens (creating if absent) the store named by dsn and brings its
// schema up to date:
//   - a postgres:// or postgresql:// URL: a PostgreSQL database (see
//     postgres.go); the database must exist, its tables are created;
//   - anything else is the path of an SQLite file ("sqlite:" before it is
//     allowed and dropped).
//
// A file that is not SQLite, a database holding another application's
// tables, or one from a newer paysip is refused and left untouched.
func Open(dsn string) (*DB, error) {
	if IsPostgres(dsn) {
		return openPostgres(dsn)
	}
	return openSQLite(strings.TrimPrefix(dsn, "sqlite:"))
}

// IsPostgres says whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Backend is the store's database: "sqlite" or "postgres".
func (d *DB) Backend() string { return d.dialect.name }

func openSQLite(path string) (*DB, error) {
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
	o, err := newFileOwner(path + "-owners")
	if err != nil {
		db.Close()
		return nil, err
	}
	return start(db, sqliteDialect, o), nil
}

// dsn is the SQLite URI of path, with the pragmas every connection gets.
// Transactions begin IMMEDIATE: they take the write lock first (waiting
// for it up to the busy timeout), so a transaction that reads, then writes
// what it read (StartClosing), never fails to upgrade its lock when
// another process shares the file.
// The path is percent-escaped: a '#' or '?' in it would otherwise end the
// file name, and drop the pragmas with it.
func dsn(path string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
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

// start runs the writer of an opened, migrated database.
func start(db *sql.DB, dl *dialect, o owner) *DB {
	d := &DB{db: db, dialect: dl, writes: make(chan *writeReq, 4096), stop: make(chan struct{}), done: make(chan struct{}), maxBatch: 512, owner: o}
	go d.writer()
	return d
}

// Close stops the writer (after the writes under way) and closes the
// database. Calling it again is harmless.
func (d *DB) Close() error {
	var err error
	d.once.Do(func() {
		close(d.stop)
		<-d.done
		d.hot.close()
		if d.owner != nil {
			d.owner.release()
		}
		err = d.db.Close()
	})
	return err
}

// write queues op for the next group commit and waits until it is durable.
func (d *DB) write(ctx context.Context, op func(*txn) error) error {
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

// maxRetries bounds the attempts of a write that lost a lock conflict
// (Postgres: deadlock or serialization failure with another process).
const maxRetries = 5

// commit commits a batch. It first runs every write straight in one
// transaction; if any fails, that transaction is rolled back and the batch
// runs again with a savepoint per write, so that a failing write (a stale
// payment, a lock conflict) undoes only itself. The first way saves two
// round trips per write on Postgres, where a write costs round trips.
func (d *DB) commit(batch []*writeReq) {
	if len(batch) == 1 {
		d.commitOne(batch[0])
		return
	}
	if d.commitStraight(batch) {
		return
	}
	d.commitSavepoints(batch)
}

// commitOne commits a batch of one write: the write is the transaction,
// so a failure rolls back only itself and needs no savepoint (two
// statements fewer on the path of a payment that arrives alone, which is
// every payment of a lightly loaded payee: its latency is the ack's).
func (d *DB) commitOne(r *writeReq) {
	for attempt := 1; ; attempt++ {
		sqltx, err := d.db.Begin()
		if err != nil {
			r.done <- notStored(err)
			return
		}
		tx := &txn{tx: sqltx, d: d.dialect, hot: &d.hot, db: d.db}
		if err := r.op(tx); err != nil {
			sqltx.Rollback()
			if d.dialect.retryable(err) && attempt < maxRetries {
				continue
			}
			r.done <- notStored(err)
			return
		}
		if err := sqltx.Commit(); err != nil {
			r.done <- notStored(err)
			return
		}
		r.done <- nil
		return
	}
}

// commitStraight runs the batch without savepoints; false if a write
// failed and nothing was committed (or answered).
func (d *DB) commitStraight(batch []*writeReq) bool {
	sqltx, err := d.db.Begin()
	if err != nil {
		return false
	}
	tx := &txn{tx: sqltx, d: d.dialect, hot: &d.hot, db: d.db}
	for _, r := range batch {
		if err := r.op(tx); err != nil {
			sqltx.Rollback()
			return false
		}
	}
	err = sqltx.Commit()
	for _, r := range batch {
		if err != nil {
			r.done <- notStored(err)
		} else {
			r.done <- nil
		}
	}
	return true
}

// commitSavepoints runs the batch with a savepoint around each write.
func (d *DB) commitSavepoints(batch []*writeReq) {
	errs := make([]error, len(batch))
	sqltx, err := d.db.Begin()
	if err != nil {
		for _, r := range batch {
			r.done <- notStored(err)
		}
		return
	}
	tx := &txn{tx: sqltx, d: d.dialect, hot: &d.hot, db: d.db}
	for i, r := range batch {
		for attempt := 1; ; attempt++ {
			if _, err := tx.Exec("SAVEPOINT w"); err != nil {
				errs[i] = notStored(err)
				break
			}
			err := r.op(tx)
			if err == nil {
				tx.Exec("RELEASE w")
				break
			}
			// Undo this write only (Postgres: and leave the aborted
			// state, so the others in the batch go on).
			tx.Exec("ROLLBACK TO w")
			tx.Exec("RELEASE w")
			if d.dialect.retryable(err) && attempt < maxRetries {
				continue
			}
			errs[i] = notStored(err)
			break
		}
	}
	if err := sqltx.Commit(); err != nil {
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
	if errors.Is(err, ErrNotStored) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrClaimed) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "disk I/O error") || strings.Contains(msg, "full") {
		return fmt.Errorf("%w (disk full or failing?): %w", ErrNotStored, err)
	}
	return fmt.Errorf("%w: %w", ErrNotStored, err)
}

// migrations bring the schema from version i to i+1. Append only: a
// released migration never changes what it does. The SQL is portable:
// it runs on SQLite and PostgreSQL alike, with {bytes} standing for the
// byte-string type native to each (BLOB, BYTEA); statements end with ";"
// and a newline.
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
		payer_key       {bytes} NOT NULL,
		payee_key       {bytes} NOT NULL,
		payer_script    {bytes} NOT NULL,
		funding_tx      {bytes} NOT NULL,
		refund_tx       {bytes},               -- payer: complete refund
		signed_sat      BIGINT NOT NULL DEFAULT 0, -- payer: highest signed
		acked_sat       BIGINT NOT NULL DEFAULT 0, -- payer: highest acknowledged
		best_sat        BIGINT NOT NULL DEFAULT 0, -- payee: best held
		best_sig        {bytes},               -- payee: its signature; payer: signature of signed_sat
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
	// 3 -> 4: SIP registrations (bindings.go), opaque to the store;
	// secrets shared by the nodes of a cluster (secrets.go); the owner of
	// a closing channel (the store handle that settles it, 0 for none;
	// claims.go).
	`CREATE TABLE bindings (
		aor         TEXT NOT NULL,
		bkey        TEXT NOT NULL,
		expires_us  BIGINT NOT NULL,           -- unix microseconds
		data        {bytes},                   -- NULL: deleted (kept until reclaimed)
		updated_us  BIGINT NOT NULL,           -- unix microseconds, set by the store
		PRIMARY KEY (aor, bkey)
	);
	CREATE INDEX bindings_expires ON bindings (expires_us);
	CREATE INDEX bindings_updated ON bindings (updated_us);
	CREATE TABLE secrets (
		name        TEXT PRIMARY KEY,
		value       {bytes} NOT NULL,
		created_at  BIGINT NOT NULL
	);
	ALTER TABLE channels ADD COLUMN closing_owner BIGINT NOT NULL DEFAULT 0;`,
	// 4 -> 5: which node wrote a binding last (bindings.go), so that a
	// node's change feed skips its own writes in the query.
	`ALTER TABLE bindings ADD COLUMN writer TEXT NOT NULL DEFAULT '';
	CREATE INDEX bindings_updated_writer ON bindings (updated_us, writer);`,
	// 5 -> 6: bindings_updated (updated_us) is a prefix of
	// bindings_updated_writer, which serves every query it served (the
	// feed's range and ORDER BY, its MAX): one B-tree less for every
	// binding a registrar writes behind.
	`DROP INDEX bindings_updated;`,
}

// SchemaVersion is the version this paysip writes.
var SchemaVersion = len(migrations)

func migrate(db *sql.DB) error { return migrateTo(db, SchemaVersion) }

// migrateTo applies the migrations up to version target on an SQLite
// database.
func migrateTo(db *sql.DB, target int) error { return migrateDialect(db, sqliteDialect, target) }

// meta is where a database keeps paysip's marks: the application id and
// the schema version.
type meta struct {
	appID, version int64
	// empty: no table at all (a new database).
	empty bool
}

// readMeta reads the marks inside tx.
func (dl *dialect) readMeta(tx *sql.Tx) (meta, error) {
	var m meta
	if dl == sqliteDialect {
		if err := tx.QueryRow("PRAGMA application_id").Scan(&m.appID); err != nil {
			return m, fmt.Errorf("%w: %v", ErrForeign, err)
		}
		if err := tx.QueryRow("PRAGMA user_version").Scan(&m.version); err != nil {
			return m, err
		}
		var tables int
		if err := tx.QueryRow("SELECT count(*) FROM sqlite_master").Scan(&tables); err != nil {
			return m, fmt.Errorf("%w: %v", ErrForeign, err)
		}
		m.empty = tables == 0
		return m, nil
	}
	var tables int
	if err := tx.QueryRow("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").Scan(&tables); err != nil {
		return m, err
	}
	m.empty = tables == 0
	var hasMeta bool
	if err := tx.QueryRow("SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'paysip_meta')").Scan(&hasMeta); err != nil {
		return m, err
	}
	if !hasMeta {
		return m, nil
	}
	if err := tx.QueryRow("SELECT application_id, schema_version FROM paysip_meta").Scan(&m.appID, &m.version); err != nil {
		return m, fmt.Errorf("%w: paysip_meta: %v", ErrForeign, err)
	}
	return m, nil
}

// initMeta marks a new database as paysip's, at version 0.
func (dl *dialect) initMeta(tx *sql.Tx) error {
	if dl == sqliteDialect {
		_, err := tx.Exec(fmt.Sprintf("PRAGMA application_id = %d", ApplicationID))
		return err
	}
	if _, err := tx.Exec("CREATE TABLE paysip_meta (application_id BIGINT NOT NULL, schema_version BIGINT NOT NULL)"); err != nil {
		return err
	}
	_, err := tx.Exec("INSERT INTO paysip_meta (application_id, schema_version) VALUES ($1, 0)", ApplicationID)
	return err
}

// setVersion records the schema version inside tx.
func (dl *dialect) setVersion(tx *sql.Tx, v int) error {
	var err error
	if dl == sqliteDialect {
		_, err = tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", v))
	} else {
		_, err = tx.Exec("UPDATE paysip_meta SET schema_version = $1", v)
	}
	return err
}

// lockSchema serialises migrations between processes (Postgres: an
// advisory lock held until the transaction ends; SQLite: the writer lock
// the first write takes).
func (dl *dialect) lockSchema(tx *sql.Tx) error {
	if dl == sqliteDialect {
		return nil
	}
	_, err := tx.Exec("SELECT pg_advisory_xact_lock($1)", ApplicationID)
	return err
}

// migrateDialect applies the migrations up to version target, one
// transaction per migration (both databases have transactional DDL), the
// version read again under the schema lock each time, so two processes
// starting at once do not apply one twice.
func migrateDialect(db *sql.DB, dl *dialect, target int) error {
	for {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		done, err := migrateStep(tx, dl, target)
		if err != nil {
			tx.Rollback()
			return err
		}
		if done {
			return tx.Rollback()
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration: %w", err)
		}
	}
}

// migrateStep applies the next migration in tx, or reports that the schema
// is at target.
func migrateStep(tx *sql.Tx, dl *dialect, target int) (done bool, err error) {
	if err := dl.lockSchema(tx); err != nil {
		return false, err
	}
	m, err := dl.readMeta(tx)
	if err != nil {
		return false, err
	}
	switch {
	case m.appID == 0 && m.empty && m.version == 0:
		if err := dl.initMeta(tx); err != nil {
			return false, err
		}
	case m.appID != ApplicationID:
		return false, fmt.Errorf("%w: application id %#x", ErrForeign, m.appID)
	case m.version > int64(SchemaVersion):
		return false, fmt.Errorf("%w: schema version %d, this paysip knows up to %d", ErrTooNew, m.version, SchemaVersion)
	}
	v := int(m.version)
	if v >= target {
		return true, nil
	}
	for _, stmt := range strings.Split(dl.schema(migrations[v]), ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.Exec(stmt); err != nil {
			return false, fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	if err := dl.setVersion(tx, v+1); err != nil {
		return false, err
	}
	return false, nil
}
