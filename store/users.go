package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/paysip/paysip/sipauth"
)

// ErrUserExists: the account name is taken.
var ErrUserExists = errors.New("user exists")

var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// AddUser creates a SIP account in realm. The password is kept only as
// digest HA1 values (MD5 and SHA-256).
func (d *DB) AddUser(ctx context.Context, name, realm, password string) error {
	if !userName.MatchString(name) {
		return fmt.Errorf("user name %q: use lower-case letters, digits, '.', '_' or '-'", name)
	}
	if len(password) < 8 {
		return fmt.Errorf("password too short: at least 8 characters")
	}
	md5 := sipauth.HA1("MD5", name, realm, password)
	sha := sipauth.HA1("SHA-256", name, realm, password)
	return d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO users (name, realm, ha1_md5, ha1_sha256, created_at) VALUES (?,?,?,?,?)`,
			name, realm, md5, sha, time.Now().Unix())
		if err != nil {
			var exists int
			tx.QueryRow("SELECT count(*) FROM users WHERE name = ?", name).Scan(&exists)
			if exists > 0 {
				return fmt.Errorf("%w: %s", ErrUserExists, name)
			}
		}
		return err
	})
}

// UserHA1 returns a user's HA1 for algorithm ("MD5" or "SHA-256") in realm.
func (d *DB) UserHA1(ctx context.Context, name, realm, algorithm string) (string, bool) {
	col := "ha1_md5"
	if algorithm == "SHA-256" {
		col = "ha1_sha256"
	}
	var ha1 string
	err := d.db.QueryRowContext(ctx, "SELECT "+col+" FROM users WHERE name = ? AND realm = ?", name, realm).Scan(&ha1)
	return ha1, err == nil
}

// Users lists the account names.
func (d *DB) Users(ctx context.Context) ([]string, error) {
	rows, err := d.db.QueryContext(ctx, "SELECT name FROM users ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
