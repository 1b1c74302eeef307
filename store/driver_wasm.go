//go:build js && wasm

package store

// syncData: no SQLite in a browser build (driver.go).
func syncData() {}
