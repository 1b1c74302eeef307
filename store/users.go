package store

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Account errors.
var (
	ErrUserExists  = errors.New("user exists")
	ErrNoSuchUser  = errors.New("no such user")
	ErrBadUserName = errors.New("bad user name")
)

var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// MinPasswordLen is the shortest password an account takes.
const MinPasswordLen = 8

func checkAccount(name, password string) error {
	if !userName.MatchString(name) {
		return fmt.Errorf("%w: %q: use lower-case letters, digits, '.', '_' or '-'", ErrBadUserName, name)
	}
	if len(password) < MinPasswordLen {
		return fmt.Errorf("password too short: at least %d characters", MinPasswordLen)
	}
	return nil
}

// AddUser creates a SIP account name in realm (the SIP domain). The
// password is kept only as digest HA1 values (MD5 and SHA-256, RFC 7616),
// which are bound to the realm.
func (d *DB) AddUser(ctx context.Context, name, realm, password string) error {
	if err := checkAccount(name, password); err != nil {
		return err
	}
	md5, sha := ha1MD5(name, realm, password), ha1SHA256(name, realm, password)
	return d.write(ctx, func(tx *txn) error {
		var exists int
		if err := tx.QueryRow("SELECT count(*) FROM users WHERE name = ? AND realm = ?", name, realm).Scan(&exists); err != nil {
			return err
		}
		if exists > 0 {
			return fmt.Errorf("%w: %s in %s", ErrUserExists, name, realm)
		}
		_, err := tx.Exec(`INSERT INTO users (name, realm, ha1_md5, ha1_sha256, created_at) VALUES (?,?,?,?,?)`,
			name, realm, md5, sha, time.Now().Unix())
		return err
	})
}

// SetPassword replaces the password of name in realm.
func (d *DB) SetPassword(ctx context.Context, name, realm, password string) error {
	if err := checkAccount(name, password); err != nil {
		return err
	}
	md5, sha := ha1MD5(name, realm, password), ha1SHA256(name, realm, password)
	return d.write(ctx, func(tx *txn) error {
		r, err := tx.Exec("UPDATE users SET ha1_md5 = ?, ha1_sha256 = ? WHERE name = ? AND realm = ?", md5, sha, name, realm)
		return affected(r, err, name, realm)
	})
}

// RemoveUser deletes the account name in realm.
func (d *DB) RemoveUser(ctx context.Context, name, realm string) error {
	return d.write(ctx, func(tx *txn) error {
		r, err := tx.Exec("DELETE FROM users WHERE name = ? AND realm = ?", name, realm)
		return affected(r, err, name, realm)
	})
}

func affected(r sql.Result, err error, name, realm string) error {
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("%w: %s in %s", ErrNoSuchUser, name, realm)
	}
	return nil
}

// UserHA1 returns a user's HA1 for algorithm ("MD5" or "SHA-256") in realm.
func (d *DB) UserHA1(ctx context.Context, name, realm, algorithm string) (string, bool) {
	col := "ha1_md5"
	if algorithm == "SHA-256" {
		col = "ha1_sha256"
	}
	var ha1 string
	err := d.queryRow(ctx, "SELECT "+col+" FROM users WHERE name = ? AND realm = ?", name, realm).Scan(&ha1)
	return ha1, err == nil
}

// User is an account.
type User struct {
	Name, Realm string
}

// Users lists the accounts of realm ("" for every realm), by realm and
// name.
func (d *DB) Users(ctx context.Context, realm string) ([]User, error) {
	rows, err := d.query(ctx, "SELECT name, realm FROM users WHERE ? = '' OR realm = ? ORDER BY realm, name", realm, realm)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.Name, &u.Realm); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// ha1MD5 and ha1SHA256 are the digest HA1 of an account (RFC 2617 section
// 3.2.2.2, RFC 7616 section 3.4.2): H(username ":" realm ":" password),
// hex. Computed here rather than with sipauth.HA1 (the same function, a
// test checks) so that the store does not pull the SIP stack into the
// browser build.
func ha1MD5(user, realm, password string) string {
	h := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(h[:])
}

func ha1SHA256(user, realm, password string) string {
	h := sha256.Sum256([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(h[:])
}
