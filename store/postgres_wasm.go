//go:build js && wasm

package store

import "errors"

// A browser build keeps its channels elsewhere (IndexedDB): no
// PostgreSQL there.
func openPostgres(string) (*DB, error) {
	return nil, errors.New("postgres store not available in this build")
}

func (dl *dialect) retryable(error) bool { return false }
