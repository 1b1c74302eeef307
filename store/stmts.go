package store

import (
	"database/sql"
	"sync"
)

// hotStmts are statements prepared once on the database and reused by
// every transaction of the writer (database/sql prepares each on a
// connection the first time it runs there, then reuses it). Only the
// constant queries of the per-payment writes go here (update's callers),
// so the map holds a handful of entries.
type hotStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns q prepared on db, preparing it the first time.
func (h *hotStmts) get(db *sql.DB, q string) (*sql.Stmt, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.m[q]; ok {
		return s, nil
	}
	s, err := db.Prepare(q)
	if err != nil {
		return nil, err
	}
	if h.m == nil {
		h.m = make(map[string]*sql.Stmt)
	}
	h.m[q] = s
	return s, nil
}

func (h *hotStmts) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.m {
		s.Close()
	}
	h.m = nil
}

// execHot runs one of the constant per-payment writes through its
// prepared statement: the SQL is parsed once per connection instead of
// once per payment.
func (t *txn) execHot(q string, args ...any) (sql.Result, error) {
	if t.hot == nil || t.db == nil {
		return t.Exec(q, args...)
	}
	s, err := t.hot.get(t.db, t.d.rebind(q))
	if err != nil {
		return nil, err
	}
	return t.tx.Stmt(s).Exec(args...)
}
