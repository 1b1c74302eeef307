package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrTargetNotEmpty: a copy into a store that already holds rows, without
// CopyOptions.Merge.
var ErrTargetNotEmpty = errors.New("target store is not empty")

// ErrCopyMismatch: a row differs between the source and the target.
var ErrCopyMismatch = errors.New("copy does not match its source")

// copyTable is a table Copy moves: its key columns first, then the rest.
type copyTable struct {
	name string
	keys int // the first keys columns are the primary key
	cols []string
}

// copyTables are every table of the schema that holds data. A channel's
// closing owner is not copied: it names a process of the source's
// database, and means nothing in another.
var copyTables = []copyTable{
	{"channels", 1, strings.Split("id,role,state,peer,key_index,capacity_sat,expiry_height,payer_key,payee_key,payer_script,"+
		"funding_tx,refund_tx,signed_sat,acked_sat,best_sat,best_sig,close_txid,created_at,updated_at", ",")},
	{"users", 2, strings.Split("name,realm,ha1_md5,ha1_sha256,created_at", ",")},
	{"bindings", 2, strings.Split("aor,bkey,expires_us,data,updated_us,writer", ",")},
	{"secrets", 1, strings.Split("name,value,created_at", ",")},
}

// CopyOptions tune Copy.
type CopyOptions struct {
	// Merge copies into a target that already has rows: rows missing
	// there are added, rows present must be equal (else ErrCopyMismatch,
	// and nothing is written). Without it a non-empty target is refused.
	Merge bool
}

// CopyReport says what Copy did, per table.
type CopyReport struct {
	Tables []TableReport
}

// TableReport is one table's count of rows in the source, copied, and
// already present (equal) in the target.
type TableReport struct {
	Name                      string
	Source, Copied, Unchanged int
}

// Copy moves every row of from into to (channels, accounts, bindings,
// shared secrets), in one transaction on the target, and checks it before
// committing: the target's rows are read back and compared with the
// source's, read again, row by row and column by column (as the databases
// return them: bytes as bytes, text as text, integers as integers). Any
// difference and nothing is written. Run it with the nodes using from
// stopped: a source that changes meanwhile fails the check.
//
// Copy can be run again: into a target it filled, with Merge, it adds
// nothing and succeeds; a row that differs is refused, never overwritten.
func Copy(ctx context.Context, from, to *DB, opts CopyOptions) (CopyReport, error) {
	var rep CopyReport
	if !opts.Merge {
		for _, tb := range copyTables {
			var n int
			if err := to.queryRow(ctx, "SELECT count(*) FROM "+tb.name).Scan(&n); err != nil {
				return rep, err
			}
			if n > 0 {
				return rep, fmt.Errorf("%w: %s has %d rows (use merge to add to it)", ErrTargetNotEmpty, tb.name, n)
			}
		}
	}
	sqltx, err := to.db.BeginTx(ctx, nil)
	if err != nil {
		return rep, err
	}
	defer sqltx.Rollback()
	tx := &txn{tx: sqltx, d: to.dialect}
	for _, tb := range copyTables {
		tr, err := copyRows(ctx, from, tx, tb, opts.Merge)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", tb.name, err)
		}
		rep.Tables = append(rep.Tables, tr)
	}
	// The check: everything again, from both sides.
	for _, tb := range copyTables {
		src, err := readRows(from.query(ctx, tb.selectAll()))
		if err != nil {
			return rep, err
		}
		dst, err := readRows(tx.Query(tb.selectAll()))
		if err != nil {
			return rep, err
		}
		if len(src) != len(dst) {
			return rep, fmt.Errorf("%w: %s: %d rows in the source, %d in the target", ErrCopyMismatch, tb.name, len(src), len(dst))
		}
		for i := range src {
			if !src[i].equal(dst[i]) {
				return rep, fmt.Errorf("%w: %s row %s: source %s, target %s", ErrCopyMismatch, tb.name, src[i].key(tb.keys), src[i], dst[i])
			}
		}
	}
	if err := sqltx.Commit(); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	return rep, nil
}

func (tb copyTable) selectAll() string {
	return "SELECT " + strings.Join(tb.cols, ", ") + " FROM " + tb.name
}

// copyRows inserts the rows of one table of from that tx's database lacks,
// and checks the ones it has.
func copyRows(ctx context.Context, from *DB, tx *txn, tb copyTable, merge bool) (TableReport, error) {
	tr := TableReport{Name: tb.name}
	rows, err := readRows(from.query(ctx, tb.selectAll()))
	if err != nil {
		return tr, err
	}
	tr.Source = len(rows)
	where := make([]string, tb.keys)
	for i := range where {
		where[i] = tb.cols[i] + " = ?"
	}
	lookup := tb.selectAll() + " WHERE " + strings.Join(where, " AND ")
	insert := "INSERT INTO " + tb.name + " (" + strings.Join(tb.cols, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(tb.cols)), ", ") + ")"
	for _, r := range rows {
		if !merge { // the target was empty: nothing to look up
			if _, err := tx.Exec(insert, r...); err != nil {
				return tr, fmt.Errorf("row %s: %w", r.key(tb.keys), err)
			}
			tr.Copied++
			continue
		}
		have, err := readRows(tx.Query(lookup, r[:tb.keys]...))
		if err != nil {
			return tr, err
		}
		if len(have) == 1 {
			if !r.equal(have[0]) {
				return tr, fmt.Errorf("%w: row %s: source %s, target already has %s", ErrCopyMismatch, r.key(tb.keys), r, have[0])
			}
			tr.Unchanged++
			continue
		}
		if _, err := tx.Exec(insert, r...); err != nil {
			return tr, fmt.Errorf("row %s: %w", r.key(tb.keys), err)
		}
		tr.Copied++
	}
	return tr, nil
}

// row is one row as the database returned it.
type row []any

// readRows reads every row, sorted by its columns (the key first), so
// that two databases' answers line up whatever their collations.
func readRows(rows *sql.Rows, err error) ([]row, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []row
	for rows.Next() {
		r := make(row, len(cols))
		ptrs := make([]any, len(cols))
		for i := range r {
			ptrs[i] = &r[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range r {
			if b, ok := v.([]byte); ok {
				r[i] = append([]byte{}, b...) // the driver may reuse it
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, rows.Err()
}

// cell is a value's type and content, for comparing and printing.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("x'%x'", v)
	case string:
		return fmt.Sprintf("%q", v)
	case int64:
		return fmt.Sprint(v)
	default:
		return fmt.Sprintf("%T(%v)", v, v)
	}
}

func (r row) String() string {
	s := make([]string, len(r))
	for i, v := range r {
		s[i] = cell(v)
	}
	return "(" + strings.Join(s, ", ") + ")"
}

func (r row) key(n int) string { return row(r[:n]).String() }

func (r row) equal(o row) bool {
	if len(r) != len(o) {
		return false
	}
	for i := range r {
		if cell(r[i]) != cell(o[i]) {
			return false
		}
	}
	return true
}
