//go:build !linux

package bench

import "os"

// dataSync flushes f as the store's SQLite commits do here: fsync(2).
func dataSync(f *os.File) error { return f.Sync() }
