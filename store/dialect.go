package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// dialect holds what differs between SQLite and PostgreSQL, kept small and
// explicit: the byte-string type of the schema (BLOB / BYTEA), the
// placeholders ("?" / "$1"), where the schema version and the application
// id live (PRAGMAs / the paysip_meta table), and the checks that a commit
// is durable when it returns. Every query is written once, with "?".
type dialect struct {
	name string
	// bytes is the native byte-string column type.
	bytes string
	// numbered placeholders ($1, $2...) instead of "?".
	numbered bool
}

var (
	sqliteDialect   = &dialect{name: "sqlite", bytes: "BLOB"}
	postgresDialect = &dialect{name: "postgres", bytes: "BYTEA", numbered: true}
)

// rebind turns the "?" placeholders of q into the dialect's. Our queries
// hold no "?" inside string literals or identifiers.
func (d *dialect) rebind(q string) string {
	if !d.numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// schema turns a migration's portable text into the dialect's: {bytes}
// is the byte-string type.
func (d *dialect) schema(m string) string {
	return strings.ReplaceAll(m, "{bytes}", d.bytes)
}

// txn is a transaction that speaks the store's dialect.
type txn struct {
	tx *sql.Tx
	d  *dialect
	// hot and db prepare the per-payment statements once (execHot); nil
	// in a txn that runs none.
	hot *hotStmts
	db  *sql.DB
}

func (t *txn) Exec(q string, args ...any) (sql.Result, error) {
	return t.tx.Exec(t.d.rebind(q), args...)
}

func (t *txn) QueryRow(q string, args ...any) *sql.Row {
	return t.tx.QueryRow(t.d.rebind(q), args...)
}

func (t *txn) Query(q string, args ...any) (*sql.Rows, error) {
	return t.tx.Query(t.d.rebind(q), args...)
}

// queryRow and query read outside the writer, in the dialect.
func (d *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return d.db.QueryRowContext(ctx, d.dialect.rebind(q), args...)
}

func (d *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.db.QueryContext(ctx, d.dialect.rebind(q), args...)
}

// exec runs one statement outside the writer (tests, migrate).
func (d *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.db.ExecContext(ctx, d.dialect.rebind(q), args...)
}
