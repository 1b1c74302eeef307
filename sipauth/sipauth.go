// Package sipauth is the server side of SIP digest authentication
// (RFC 3261 section 22, RFC 7616 computation, RFC 8760 algorithms): it
// issues challenges for SHA-256 and MD5 and verifies credentials against
// stored HA1 values, so no password is kept in clear.
//
// Nonces are stateless: a timestamp and an HMAC of it under the server's
// secret, valid for NonceLifetime. It is pure: time is passed in.
package sipauth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/icholy/digest"
)

// NonceLifetime is how long a nonce is accepted.
const NonceLifetime = 5 * time.Minute

// DefaultAlgorithms are offered unless configured otherwise: MD5 only.
// RFC 8760 adds SHA-256 (and would put it first), but deployed clients
// stumble on it: sipp 3.6 answers only the first challenge and knows only
// MD5, baresip 1.0 gives up on a challenge set that contains an algorithm
// it lacks. Deployments whose clients implement RFC 8760 configure
// "SHA-256", "MD5".
var DefaultAlgorithms = []string{"MD5"}

// Errors of Verify.
var (
	ErrNoCredentials  = errors.New("no credentials")
	ErrBadCredentials = errors.New("bad credentials")
	ErrUnknownUser    = errors.New("unknown user")
	ErrStale          = errors.New("stale nonce")
)

// HA1 is a user's stored secret for one algorithm: H(user:realm:password).
func HA1(algorithm, user, realm, password string) string {
	return hexHash(algorithm, user+":"+realm+":"+password)
}

func newHash(algorithm string) hash.Hash {
	if strings.EqualFold(algorithm, "SHA-256") {
		return sha256.New()
	}
	return md5.New()
}

func hexHash(algorithm, s string) string {
	h := newHash(algorithm)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// Verifier checks credentials for one realm.
type Verifier struct {
	Realm  string
	Secret []byte
	// Algorithms offered, in order of preference ("MD5", "SHA-256");
	// empty means DefaultAlgorithms. Only these are accepted.
	Algorithms []string
	// Lookup returns a user's HA1 for an algorithm ("MD5" or "SHA-256").
	Lookup func(user, algorithm string) (ha1 string, ok bool)
}

func (v *Verifier) nonce(now time.Time) string {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(now.Unix()))
	m := hmac.New(sha256.New, v.Secret)
	m.Write(ts[:])
	return base64.RawURLEncoding.EncodeToString(append(ts[:], m.Sum(nil)[:16]...))
}

func (v *Verifier) checkNonce(n string, now time.Time) error {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != 24 {
		return ErrBadCredentials
	}
	m := hmac.New(sha256.New, v.Secret)
	m.Write(b[:8])
	if !hmac.Equal(m.Sum(nil)[:16], b[8:]) {
		return ErrBadCredentials
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	if now.Sub(issued) > NonceLifetime || issued.After(now.Add(time.Minute)) {
		return ErrStale
	}
	return nil
}

// Challenges returns the values of the WWW-Authenticate (or
// Proxy-Authenticate) headers to send, one per algorithm.
func (v *Verifier) Challenges(now time.Time, stale bool) []string {
	n := v.nonce(now)
	algs := v.algorithms()
	out := make([]string, 0, len(algs))
	for _, alg := range algs {
		c := digest.Challenge{Realm: v.Realm, Nonce: n, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

func (v *Verifier) algorithms() []string {
	if len(v.Algorithms) == 0 {
		return DefaultAlgorithms
	}
	return v.Algorithms
}

func (v *Verifier) offers(alg string) bool {
	for _, a := range v.algorithms() {
		if strings.EqualFold(a, alg) {
			return true
		}
	}
	return false
}

// Verify checks an Authorization header value for a request of method;
// it returns the authenticated user name.
func (v *Verifier) Verify(header, method string, now time.Time) (string, error) {
	if header == "" {
		return "", ErrNoCredentials
	}
	cred, err := digest.ParseCredentials(header)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	if cred.Realm != v.Realm {
		return "", fmt.Errorf("%w: realm %q", ErrBadCredentials, cred.Realm)
	}
	alg := cred.Algorithm
	if alg == "" {
		alg = "MD5"
	}
	if !v.offers(alg) {
		return "", fmt.Errorf("%w: algorithm %q not offered", ErrBadCredentials, alg)
	}
	if err := v.checkNonce(cred.Nonce, now); err != nil {
		return "", err
	}
	ha1, ok := v.Lookup(cred.Username, strings.ToUpper(alg))
	if !ok {
		return "", ErrUnknownUser
	}
	ha2 := hexHash(alg, method+":"+cred.URI)
	var want string
	switch cred.QOP {
	case "auth":
		want = hexHash(alg, ha1+":"+cred.Nonce+":"+fmt.Sprintf("%08x", cred.Nc)+":"+cred.Cnonce+":auth:"+ha2)
	case "":
		want = hexHash(alg, ha1+":"+cred.Nonce+":"+ha2)
	default:
		return "", fmt.Errorf("%w: qop %q", ErrBadCredentials, cred.QOP)
	}
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(cred.Response))) {
		return "", ErrBadCredentials
	}
	return cred.Username, nil
}
