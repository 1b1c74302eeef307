package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/paysip/paysip/internal/pgtest"
)

// TestMain stops the throwaway PostgreSQL the tests started, if any.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is a database the store runs on. fresh names a new, empty
// database (a file path, a postgres:// URL); on Postgres it skips the test
// when PostgreSQL is not installed, unless PAYSIP_REQUIRE_INTEROP=1.
type backend struct {
	name  string
	fresh func(t testing.TB) string
}

var backendList = []backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "paysip.db") }},
	{"postgres", pgtest.DSN},
}

// eachBackend runs f as a subtest on SQLite and on PostgreSQL.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backendList {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// open opens a store on a new database of b, closed when t ends.
func (b backend) open(t testing.TB) (*DB, string) {
	t.Helper()
	dsn := b.fresh(t)
	d, err := Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dsn
}

// BenchmarkBackendPayments stores payee payments durably from many
// channels at once on each backend, and reports payments/s: each call
// returns only once its payment is committed (SQLite: WAL, synchronous
// FULL; Postgres: fsync and synchronous_commit on), as the ack requires.
// batch=1 turns the group commit off, to show what it is worth.
func BenchmarkBackendPayments(b *testing.B) {
	for _, be := range backendList {
		for _, channels := range []int{1, 100} {
			for _, batch := range []int{1, 512} {
				b.Run(fmt.Sprintf("%s/channels=%d/batch=%d", be.name, channels, batch), func(b *testing.B) {
					d, _ := be.open(b)
					d.maxBatch = batch
					benchPayments(b, d, channels)
				})
			}
		}
	}
}
