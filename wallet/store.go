package wallet

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fileVersion is the version of the wallet file format.
const fileVersion = 1

// kdfIterations of PBKDF2-HMAC-SHA512 (OWASP 2023 guidance: 210,000).
const kdfIterations = 210_000

// fileState is the wallet file. The mnemonic is the only secret; it is
// stored in clear only when no passphrase is set.
type fileState struct {
	Version        int        `json:"version"`
	Network        string     `json:"network"`
	Mnemonic       string     `json:"mnemonic,omitempty"`
	Encrypted      *encrypted `json:"encrypted,omitempty"`
	NextReceive    uint32     `json:"next_receive"`
	NextChange     uint32     `json:"next_change"`
	NextChannelKey uint32     `json:"next_channel_key"`
}

type encrypted struct {
	KDF        string `json:"kdf"` // "pbkdf2-sha512"
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"` // AES-256-GCM of the mnemonic
}

// ErrWrongPassphrase: the passphrase does not decrypt the wallet.
var ErrWrongPassphrase = errors.New("wrong wallet passphrase")

// ErrExists: a wallet file is already there; nothing was overwritten.
var ErrExists = errors.New("wallet already exists")

func aead(passphrase string, salt []byte, iterations int) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha512.New, passphrase, salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(mnemonic, passphrase string) (*encrypted, error) {
	e := &encrypted{KDF: "pbkdf2-sha512", Iterations: kdfIterations, Salt: make([]byte, 16), Nonce: make([]byte, 12)}
	if _, err := rand.Read(e.Salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(e.Nonce); err != nil {
		return nil, err
	}
	g, err := aead(passphrase, e.Salt, e.Iterations)
	if err != nil {
		return nil, err
	}
	e.Ciphertext = g.Seal(nil, e.Nonce, []byte(mnemonic), []byte("paysip wallet v1"))
	return e, nil
}

func (e *encrypted) open(passphrase string) (string, error) {
	if e.KDF != "pbkdf2-sha512" || e.Iterations <= 0 {
		return "", fmt.Errorf("unsupported wallet encryption %q", e.KDF)
	}
	g, err := aead(passphrase, e.Salt, e.Iterations)
	if err != nil {
		return "", err
	}
	if len(e.Nonce) != g.NonceSize() {
		return "", errors.New("corrupt wallet file: bad nonce")
	}
	pt, err := g.Open(nil, e.Nonce, e.Ciphertext, []byte("paysip wallet v1"))
	if err != nil {
		return "", ErrWrongPassphrase
	}
	return string(pt), nil
}

// Storage keeps a wallet's state: one small JSON document (the format of
// the wallet file), the mnemonic in it encrypted when a passphrase is set.
// File is the CLI's; the browser's build keeps it in IndexedDB.
type Storage interface {
	// Load returns the stored document, or an error wrapping
	// fs.ErrNotExist when there is none.
	Load() ([]byte, error)
	// Save replaces the document; it is durable when Save returns (an
	// address index handed out is never handed out again).
	Save(b []byte) error
	// String names the storage in errors.
	String() string
}

// File is the wallet file at a path: replaced atomically and durably.
type File string

// Load implements Storage.
func (f File) Load() ([]byte, error) { return os.ReadFile(string(f)) }

// Save implements Storage.
func (f File) Save(b []byte) error { return writeFile(string(f), b) }

func (f File) String() string { return "wallet file " + string(f) }

// exists reports whether st holds a wallet (an unreadable one counts: it
// must not be overwritten).
func exists(st Storage) bool {
	_, err := st.Load()
	return !errors.Is(err, fs.ErrNotExist)
}

// readState loads a wallet's state.
func readState(st Storage) (*fileState, error) {
	b, err := st.Load()
	if err != nil {
		return nil, err
	}
	s, err := parseState(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st, err)
	}
	return s, nil
}

// parseState decodes and checks a wallet file's contents.
func parseState(b []byte) (*fileState, error) {
	var s fileState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	if s.Version != fileVersion {
		return nil, fmt.Errorf("version %d; this paysip reads version %d", s.Version, fileVersion)
	}
	if (s.Mnemonic == "") == (s.Encrypted == nil) {
		return nil, errors.New("corrupt: wants exactly one of a mnemonic and an encrypted one")
	}
	if s.Encrypted != nil && (len(s.Encrypted.Salt) == 0 || len(s.Encrypted.Ciphertext) == 0) {
		return nil, errors.New("corrupt: encryption fields missing")
	}
	return &s, nil
}

// writeState saves a wallet's state.
func writeState(st Storage, s *fileState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return st.Save(b)
}

// writeFile replaces a file atomically and durably: a temporary file is
// written and synced, renamed over the old one, and the directory synced.
func writeFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".wallet-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
