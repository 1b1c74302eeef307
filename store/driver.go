//go:build !(js && wasm)

package store

// The SQLite driver (modernc.org/sqlite, pure Go but not for
// WebAssembly). Without it (GOOS=js GOARCH=wasm) the package still
// compiles, so that its record types can travel with the agent into a
// browser build, where channels are kept by another agent.Store (the
// browser's IndexedDB); Open then fails with "unknown driver".
import "modernc.org/sqlite" // registers the "sqlite" driver

// syncData makes SQLite commit with fdatasync(2) instead of fsync(2)
// (process-wide, where the system has it: Linux, the BSDs). fdatasync
// writes the data and what is needed to read it back, the file's size
// included: a commit is as durable, without flushing the file's times
// through the file system's journal, which on ext4 is most of what an
// fsync of an overwritten WAL page waits for. It is what SQLite itself
// does on Linux (HAVE_FDATASYNC); the transpiled library defaults to
// fsync. Elsewhere it stays fsync.
func syncData() { sqlite.Fdatasync(true) }
