//go:build linux

package store

import (
	"testing"

	"modernc.org/sqlite"
)

// An SQLite store commits with fdatasync(2) (driver.go): what SQLite
// itself does on Linux, as durable as fsync, about a third less of a
// commit's wait on ext4.
func TestCommitsWithFdatasync(t *testing.T) {
	open(t)
	if !sqlite.FdatasyncEnabled() {
		t.Fatal("the SQLite store syncs with fsync(2), not fdatasync(2)")
	}
}
