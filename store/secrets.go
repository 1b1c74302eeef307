package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"
)

// SharedSecret returns the secret stored under name, creating it with size
// random bytes on the first call. Every process sharing the store gets the
// same bytes: the first to ask decides (INSERT ... ON CONFLICT DO NOTHING,
// then read back, in one transaction), so several nodes of one domain
// share, say, the key of their digest nonces without configuring it.
// The secret is as safe as the database: whoever reads the database reads
// it. size is 16 to 1024 bytes; a secret stored earlier with another size
// is returned as it is.
func (d *DB) SharedSecret(ctx context.Context, name string, size int) ([]byte, error) {
	if name == "" || len(name) > 256 {
		return nil, fmt.Errorf("secret name %q: 1 to 256 bytes", name)
	}
	if size < 16 || size > 1024 {
		return nil, fmt.Errorf("secret size %d: 16 to 1024 bytes", size)
	}
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	var value []byte
	err := d.write(ctx, func(tx *txn) error {
		if _, err := tx.Exec(`INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			name, fresh, time.Now().Unix()); err != nil {
			return err
		}
		return tx.QueryRow("SELECT value FROM secrets WHERE name = ?", name).Scan(&value)
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}
