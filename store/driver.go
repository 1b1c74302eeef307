//go:build !(js && wasm)

package store

// The SQLite driver (modernc.org/sqlite, pure Go but not for
// WebAssembly). Without it (GOOS=js GOARCH=wasm) the package still
// compiles, so that its record types can travel with the agent into a
// browser build, where channels are kept by another agent.Store (the
// browser's IndexedDB); Open then fails with "unknown driver".
import _ "modernc.org/sqlite" // registers the "sqlite" driver
