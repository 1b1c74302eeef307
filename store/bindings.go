package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// StoredBinding is one SIP registration binding (RFC 3261 section 10.3),
// kept so that a restarted node, and every node sharing a Postgres store,
// still routes to it. Data is opaque to the store (the registrar encodes
// the binding itself).
//
// Bindings and AllBindings return live bindings only. BindingsChangedSince
// also returns the deleted ones (DeleteBinding), with Data nil and Expires
// the time of the deletion, so that a node following the changes of
// another learns of the deletion; expired bindings come back as they were
// (their Expires says they are gone).
type StoredBinding struct {
	AOR, Key string
	Expires  time.Time
	Data     []byte
	// Updated orders the writes of one binding (the later stays). Given
	// zero, the store stamps it when the binding is written: by the
	// database's clock on Postgres (one clock for every node), by the
	// process's on SQLite. Times are kept to the microsecond, read back
	// in UTC.
	Updated time.Time
	// Writer names the node that wrote the binding ("" for none), for
	// BindingsChangedSinceExcept.
	Writer string
}

// Deleted says whether b is the trace of a deleted binding.
func (b StoredBinding) Deleted() bool { return b.Data == nil }

// Binding limits: what the outside can make the store hold.
const (
	MaxBindingData = 64 << 10
	MaxBindingKey  = 1024
	// BindingTombstoneKeep is how long a deleted binding's trace stays for
	// BindingsChangedSince before ReclaimBindings removes it.
	BindingTombstoneKeep = 10 * time.Minute
)

// ErrBadBinding: a binding the store refuses to keep.
var ErrBadBinding = errors.New("bad binding")

// nowMicros is the store's clock for Updated, in unix microseconds, as SQL:
// the database server's on Postgres.
func (dl *dialect) nowMicros() string {
	if dl == postgresDialect {
		return "CAST(extract(epoch from clock_timestamp()) * 1000000 AS BIGINT)"
	}
	return "?"
}

// nowArgs is the argument nowMicros takes (none on Postgres).
func (dl *dialect) nowArgs() []any {
	if dl == postgresDialect {
		return nil
	}
	return []any{time.Now().UnixMicro()}
}

// PutBinding stores b, replacing the binding of the same (AOR, Key)
// unless that one was updated later: of two writes of one binding, the one
// with the later Updated stays, whatever order they arrive in (nodes may
// write behind). A zero Updated is stamped by the store. Durable when it
// returns.
func (d *DB) PutBinding(ctx context.Context, b StoredBinding) error {
	return d.PutBindings(ctx, []StoredBinding{b})
}

// PutBindings stores several bindings as PutBinding does, in one
// transaction (one commit for a registrar's write-behind batch): all are
// stored, or none.
//
// On PostgreSQL the rows go in multi-row upserts (up to putRowsMax a
// statement, in a few fixed sizes so that each is prepared once): one
// round trip for 16 bindings rather than one each. On SQLite they go one
// upsert each: a statement that writes several rows keeps a statement
// journal of the pages it changes (to undo itself alone on an error),
// which spills to a temporary file past 64 KiB: with registrations
// spread over the address space, that journal was 10-13% of a
// registrar's CPU under load, more than the per-statement calls it saved
// (BenchmarkPutBindings/batch=240/random). A statement never holds one
// binding twice (Postgres refuses to update a row twice in one
// statement): a repeated binding starts the next statement, so the
// writes run in the order given, as one upsert each would.
func (d *DB) PutBindings(ctx context.Context, bs []StoredBinding) error {
	for _, b := range bs {
		switch {
		case b.AOR == "" || b.Key == "":
			return fmt.Errorf("%w: empty AOR or key", ErrBadBinding)
		case len(b.AOR) > MaxBindingKey || len(b.Key) > MaxBindingKey:
			return fmt.Errorf("%w: AOR or key longer than %d bytes", ErrBadBinding, MaxBindingKey)
		case len(b.Data) > MaxBindingData:
			return fmt.Errorf("%w: %d bytes of data, at most %d", ErrBadBinding, len(b.Data), MaxBindingData)
		}
	}
	if len(bs) == 0 {
		return nil
	}
	return d.write(ctx, func(tx *txn) error {
		args := make([]any, 0, d.dialect.putRows()*putBindingCols)
		inStmt := make(map[[2]string]struct{}, min(len(bs), d.dialect.putRows()))
		for len(bs) > 0 {
			// The longest run of distinct bindings, then the largest
			// fixed size that fits in it.
			run, most := 1, d.dialect.putRows()
			if most > 1 {
				clear(inStmt)
				for run = 0; run < len(bs) && run < most; run++ {
					k := [2]string{bs[run].AOR, bs[run].Key}
					if _, dup := inStmt[k]; dup {
						break
					}
					inStmt[k] = struct{}{}
				}
			}
			n := most
			for n > run {
				n /= putRowsStep
			}
			args = args[:0]
			for _, b := range bs[:n] {
				data := b.Data
				if data == nil {
					data = []byte{} // nil is a deletion's mark
				}
				args = append(args, b.AOR, b.Key, b.Expires.UnixMicro(), data, b.Writer, d.dialect.updatedArg(b.Updated))
			}
			if _, err := tx.execHot(d.dialect.putBindingsQuery(n), args...); err != nil {
				return err
			}
			bs = bs[n:]
		}
		return nil
	})
}

// Rows of a binding upsert: statements hold putRowsMax rows, or that
// divided by putRowsStep once or more (16, 4, 1): at most
// putRowsMax*putBindingCols parameters (SQLite allows 32,766, Postgres
// 65,535), three statement texts.
const (
	putRowsMax     = 16
	putRowsStep    = 4
	putBindingCols = 6
)

// putRows is the most rows an upsert statement holds (see PutBindings).
func (dl *dialect) putRows() int {
	if dl == sqliteDialect {
		return 1
	}
	return putRowsMax
}

// putBindingsQuery is the upsert of n bindings, n one of the fixed sizes:
// a constant text for each, which execHot prepares once.
func (dl *dialect) putBindingsQuery(n int) string { return putBindingsQueries[dl][n] }

var putBindingsQueries = map[*dialect]map[int]string{
	sqliteDialect: putBindingsTexts(sqliteDialect), postgresDialect: putBindingsTexts(postgresDialect),
}

func putBindingsTexts(dl *dialect) map[int]string {
	// The store stamps a zero Updated: on Postgres by the database's
	// clock (updatedArg passes NULL), on SQLite by the process's
	// (updatedArg passes it).
	row := "(?, ?, ?, ?, ?, ?)"
	if dl == postgresDialect {
		row = "(?, ?, ?, ?, ?, COALESCE(CAST(? AS BIGINT), " + dl.nowMicros() + "))"
	}
	texts := map[int]string{}
	for n := dl.putRows(); n >= 1; n /= putRowsStep {
		var q strings.Builder
		q.WriteString("INSERT INTO bindings (aor, bkey, expires_us, data, writer, updated_us) VALUES ")
		for i := range n {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(row)
		}
		q.WriteString(` ON CONFLICT (aor, bkey) DO UPDATE SET expires_us = excluded.expires_us, data = excluded.data, writer = excluded.writer,
			updated_us = excluded.updated_us
			WHERE excluded.updated_us >= bindings.updated_us`)
		texts[n] = q.String()
	}
	return texts
}

// updatedArg is the parameter of a binding's updated_us: u, or for a
// zero u the store's clock (see putBindingsQuery).
func (dl *dialect) updatedArg(u time.Time) any {
	switch {
	case !u.IsZero():
		return u.UnixMicro()
	case dl == postgresDialect:
		return nil
	default:
		return time.Now().UnixMicro()
	}
}

// DeleteBinding removes the binding (aor, key), leaving a trace for
// BindingsChangedSince. Deleting a binding that is not there is not an
// error.
func (d *DB) DeleteBinding(ctx context.Context, aor, key string) error {
	now := d.dialect.nowMicros()
	q := `UPDATE bindings SET data = NULL, writer = '', expires_us = ` + now + `, updated_us = ` + now + `
		WHERE aor = ? AND bkey = ? AND data IS NOT NULL`
	args := append(append(d.dialect.nowArgs(), d.dialect.nowArgs()...), aor, key)
	return d.write(ctx, func(tx *txn) error {
		_, err := tx.Exec(q, args...)
		return err
	})
}

const bindingColumns = "aor, bkey, expires_us, data, updated_us, data IS NULL"

func (d *DB) bindings(ctx context.Context, where string, args ...any) ([]StoredBinding, error) {
	rows, err := d.query(ctx, "SELECT "+bindingColumns+" FROM bindings WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredBinding
	for rows.Next() {
		var b StoredBinding
		var expires, updated int64
		var deleted bool
		if err := rows.Scan(&b.AOR, &b.Key, &expires, &b.Data, &updated, &deleted); err != nil {
			return nil, err
		}
		b.Expires, b.Updated = time.UnixMicro(expires).UTC(), time.UnixMicro(updated).UTC()
		switch {
		case deleted:
			b.Data = nil
		case b.Data == nil:
			b.Data = []byte{}
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Bindings returns the bindings of aor unexpired at now, by key.
func (d *DB) Bindings(ctx context.Context, aor string, now time.Time) ([]StoredBinding, error) {
	return d.bindings(ctx, "aor = ? AND expires_us > ? AND data IS NOT NULL ORDER BY bkey", aor, now.UnixMicro())
}

// AllBindings returns every binding unexpired at now, by AOR and key.
func (d *DB) AllBindings(ctx context.Context, now time.Time) ([]StoredBinding, error) {
	return d.bindings(ctx, "expires_us > ? AND data IS NOT NULL ORDER BY aor, bkey", now.UnixMicro())
}

// BindingsChangedSince returns the bindings written or deleted after since
// (Updated > since), oldest change first, deletions included (Data nil).
// Updated is stamped when a write runs, a moment before it commits: a
// follower should ask again from a little before its previous answer's
// time (a few seconds of overlap), and apply the answers as the upserts
// they are.
func (d *DB) BindingsChangedSince(ctx context.Context, since time.Time) ([]StoredBinding, error) {
	return d.bindings(ctx, "updated_us > ? ORDER BY updated_us, aor, bkey", since.UnixMicro())
}

// BindingsChangedSinceExcept is BindingsChangedSince without the rows
// whose last write was writer's: a node's feed need not read back what it
// wrote itself (a registrar taking thousands of new bindings a second
// spent a quarter of its CPU doing so). mark is the newest Updated after
// since of any writer (zero if none): how far the feed has read, its own
// rows included, so that it can ask from there next time rather than
// scan its own rows again. An empty writer excludes nothing.
func (d *DB) BindingsChangedSinceExcept(ctx context.Context, since time.Time, writer string) (recs []StoredBinding, mark time.Time, err error) {
	var newest sql.NullInt64
	if err := d.queryRow(ctx, "SELECT MAX(updated_us) FROM bindings WHERE updated_us > ?", since.UnixMicro()).Scan(&newest); err != nil {
		return nil, time.Time{}, err
	}
	if newest.Valid {
		mark = time.UnixMicro(newest.Int64).UTC()
	}
	if writer == "" {
		recs, err = d.BindingsChangedSince(ctx, since)
	} else {
		recs, err = d.bindings(ctx, "updated_us > ? AND writer <> ? ORDER BY updated_us, aor, bkey", since.UnixMicro(), writer)
	}
	return recs, mark, err
}

// ReclaimBindings deletes the bindings expired at now, and the traces of
// deleted ones older than BindingTombstoneKeep, and says how many rows went.
func (d *DB) ReclaimBindings(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := d.write(ctx, func(tx *txn) error {
		res, err := tx.Exec(`DELETE FROM bindings WHERE expires_us <= ? AND (data IS NOT NULL OR updated_us <= ?)`,
			now.UnixMicro(), now.Add(-BindingTombstoneKeep).UnixMicro())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
