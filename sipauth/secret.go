package sipauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Shared secrets. A nonce is an HMAC under the server's secret, so a
// nonce issued by one node is accepted by another only if both hold the
// same secret: the nodes of one domain behind an edge proxy share it as
// configuration (a value, a file, or the shared store), the way they
// share their accounts. A replay is caught by the node that already saw
// the nonce count; the edge sends every request answering one nonce to
// one node (deploy/kamailio: the dispatcher hashes over the nonce).

// SecretLen is the length of a generated secret, and the least accepted.
const SecretLen = 32

// ErrSecret: a secret that is too short or not hex/base64.
var ErrSecret = errors.New("sipauth: secret")

// NewSecret returns SecretLen random bytes.
func NewSecret() []byte {
	b := make([]byte, SecretLen)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}

// ParseSecret reads a secret written as hex or base64 (standard or URL
// alphabet, padded or not): at least SecretLen bytes once decoded.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var b []byte
	if h, err := hex.DecodeString(s); err == nil {
		b = h
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if d, err := enc.DecodeString(s); err == nil {
				b = d
				break
			}
		}
	}
	if b == nil {
		return nil, fmt.Errorf("%w: neither hex nor base64", ErrSecret)
	}
	if len(b) < SecretLen {
		return nil, fmt.Errorf("%w: %d bytes, at least %d needed (make one with: head -c 32 /dev/urandom | base64)", ErrSecret, len(b), SecretLen)
	}
	return b, nil
}

// ReadSecretFile reads a secret file (ParseSecret of its content). The
// file must not be readable by group or others.
func ReadSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable by others (mode %v): chmod 600 it", ErrSecret, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSecret(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
