// Package sipauth is the server side of SIP digest authentication
// (RFC 3261 section 22, RFC 7616 computation, RFC 8760 algorithms): it
// issues challenges for SHA-256 and MD5 and verifies credentials against
// stored HA1 values, so no password is kept in clear.
//
// Nonces are a timestamp, random bytes and an HMAC of both under the
// server's secret, valid for NonceLifetime: a forged or stale nonce is
// recognised without state. Replays are not: the verifier remembers, per
// nonce in use, the highest nonce count (nc) it accepted, and refuses an
// nc that is not above it (RFC 7616 section 3.4.5, RFC 2617 section 3.2.2:
// the server SHOULD check nc to detect replays). It requires qop=auth (so
// that there is an nc to check) and a digest-uri equal to the
// Request-URI (RFC 7616 section 3.4.6). A nonce is bound to the client's
// address: one obtained by an attacker cannot be answered from a forged
// source address (a REGISTER spoofing a victim's address would bind the
// victim as a contact and make us a reflector). It is pure: time and
// randomness are passed in.
package sipauth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// NonceLifetime is how long a nonce is accepted.
const NonceLifetime = 5 * time.Minute

// DefaultMaxNonces bounds the nonces whose counts are remembered.
const DefaultMaxNonces = 100_000

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
	// ErrReplay: a nonce count not above the highest accepted for its
	// nonce; answered like a stale nonce (a fresh challenge), since an
	// honest client that reused a nonce out of order recovers with it.
	ErrReplay = fmt.Errorf("%w: nonce count replayed", ErrStale)
	// ErrURI: the digest-uri is not the request's Request-URI.
	ErrURI = fmt.Errorf("%w: digest uri is not the Request-URI", ErrBadCredentials)
)

// HA1 is a user's stored secret for one algorithm: H(user:realm:password).
func HA1(algorithm, user, realm, password string) string {
	return hexHash(algorithm, user, ":", realm, ":", password)
}

// hexHash is the lowercase hex digest of the concatenated parts (one
// buffer on the stack for the usual sizes, no hash object).
func hexHash(algorithm string, parts ...string) string {
	var stack [512]byte
	b := stack[:0]
	for _, p := range parts {
		b = append(b, p...)
	}
	if strings.EqualFold(algorithm, "SHA-256") {
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
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
	// Rand makes nonces unique (crypto/rand when nil).
	// Secret and Rand do not change once the Verifier is in use.
	Rand io.Reader
	// MaxNonces bounds the nonces whose counts are remembered
	// (DefaultMaxNonces when 0). When full, the oldest are forgotten and
	// every nonce issued before them is treated as stale, so that a
	// forgotten nonce cannot be replayed.
	MaxNonces int

	macs   sync.Pool // hash.Hash: HMAC-SHA-256 under Secret
	mu     sync.Mutex
	counts map[string]nonceCount
	floor  time.Time // nonces issued before are stale (some were forgotten)
}

type nonceCount struct {
	issued time.Time
	nc     int
}

const nonceLen = 8 + 8 + 16 // timestamp, random, HMAC

// Request is what Verify checks: the Authorization (or
// Proxy-Authorization) value and the request it came with.
type Request struct {
	Authorization string
	Method        string
	URI           string // the Request-URI
	Client        string // the client's address (IP) the challenge went to
}

func (v *Verifier) nonceMAC(b []byte, client string) []byte {
	// An HMAC object per call cost as much as the MAC itself: they are
	// reused (v.Secret does not change once in use).
	m, _ := v.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, v.Secret)
	} else {
		m.Reset()
	}
	defer v.macs.Put(m)
	m.Write(b[:16])
	m.Write([]byte(client))
	return m.Sum(nil)[:16]
}

func (v *Verifier) nonce(client string, now time.Time) string {
	b := make([]byte, nonceLen)
	binary.BigEndian.PutUint64(b[:8], uint64(now.Unix()))
	r := v.Rand
	if r == nil {
		r = rand.Reader
	}
	io.ReadFull(r, b[8:16])
	copy(b[16:], v.nonceMAC(b, client))
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkNonce verifies a nonce's HMAC (for this client) and age and
// returns when it was issued.
func (v *Verifier) checkNonce(n, client string, now time.Time) (time.Time, error) {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != nonceLen {
		return time.Time{}, ErrBadCredentials
	}
	if !hmac.Equal(v.nonceMAC(b, client), b[16:]) {
		return time.Time{}, fmt.Errorf("%w: nonce not ours or not issued to this client", ErrBadCredentials)
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	if now.Sub(issued) > NonceLifetime || issued.After(now.Add(time.Minute)) {
		return time.Time{}, ErrStale
	}
	return issued, nil
}

// useCount records nc for a nonce, refusing a count not above the highest
// accepted (a replay). Expired nonces are forgotten as the map fills.
func (v *Verifier) useCount(nonce string, issued time.Time, nc int, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.counts == nil {
		v.counts = map[string]nonceCount{}
	}
	if issued.Before(v.floor) {
		return ErrStale
	}
	if c, ok := v.counts[nonce]; ok {
		if nc <= c.nc {
			return ErrReplay
		}
		v.counts[nonce] = nonceCount{issued: issued, nc: nc}
		return nil
	}
	limit := v.MaxNonces
	if limit <= 0 {
		limit = DefaultMaxNonces
	}
	if len(v.counts) >= limit {
		v.prune(now, limit)
		if issued.Before(v.floor) {
			return ErrStale
		}
	}
	v.counts[nonce] = nonceCount{issued: issued, nc: nc}
	return nil
}

// prune forgets expired nonces, then, if still at the limit, the oldest
// half, raising the floor above them.
func (v *Verifier) prune(now time.Time, limit int) {
	for n, c := range v.counts {
		if now.Sub(c.issued) > NonceLifetime {
			delete(v.counts, n)
		}
	}
	if len(v.counts) < limit {
		return
	}
	times := make([]time.Time, 0, len(v.counts))
	for _, c := range v.counts {
		times = append(times, c.issued)
	}
	slices.SortFunc(times, time.Time.Compare)
	cut := times[len(times)/2].Add(time.Second) // nonce times have 1 s resolution
	for n, c := range v.counts {
		if c.issued.Before(cut) {
			delete(v.counts, n)
		}
	}
	v.floor = cut
}

// Nonces returns how many nonce counts are remembered (monitoring, tests).
func (v *Verifier) Nonces() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.counts)
}

// Challenges returns the values of the WWW-Authenticate (or
// Proxy-Authenticate) headers to send to client, one per algorithm.
func (v *Verifier) Challenges(client string, now time.Time, stale bool) []string {
	n := v.nonce(client, now)
	algs := v.algorithms()
	out := make([]string, 0, len(algs))
	realm := strconv.Quote(v.Realm)
	for _, alg := range algs {
		// What digest.Challenge.String writes (RFC 7616 section 3.3),
		// without its parameter list.
		c := "Digest realm=" + realm + `, nonce="` + n + `", `
		if stale {
			c += "stale=true, "
		}
		out = append(out, c+"algorithm="+alg+`, qop="auth"`)
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

// Verify checks a request's credentials; it returns the authenticated
// user name. Each (nonce, nc) is accepted once.
func (v *Verifier) Verify(req Request, now time.Time) (string, error) {
	header, method, requestURI := req.Authorization, req.Method, req.URI
	if header == "" {
		return "", ErrNoCredentials
	}
	cred, err := ParseCredentials(header)
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
	issued, err := v.checkNonce(cred.Nonce, req.Client, now)
	if err != nil {
		return "", err
	}
	if !sameURI(cred.URI, requestURI) {
		return "", ErrURI
	}
	ha1, ok := v.Lookup(cred.Username, strings.ToUpper(alg))
	if !ok {
		return "", ErrUnknownUser
	}
	ha2 := hexHash(alg, method, ":", cred.URI)
	var want string
	switch cred.QOP {
	case "auth":
		var ncb [4]byte
		var nc [8]byte
		binary.BigEndian.PutUint32(ncb[:], uint32(cred.Nc))
		hex.Encode(nc[:], ncb[:])
		want = hexHash(alg, ha1, ":", cred.Nonce, ":", string(nc[:]), ":", cred.Cnonce, ":auth:", ha2)
	default:
		// RFC 2069 digests (no qop) have no nonce count to detect a
		// replay with; auth-int is not offered.
		return "", fmt.Errorf("%w: qop %q", ErrBadCredentials, cred.QOP)
	}
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(cred.Response))) {
		return "", ErrBadCredentials
	}
	// Only a correct response spends the count: a forger cannot fill the
	// table or burn an honest client's counts.
	if err := v.useCount(cred.Nonce, issued, cred.Nc, now); err != nil {
		return "", err
	}
	return cred.Username, nil
}

// sameURI compares a digest-uri with the Request-URI as SIP URIs (RFC 3261
// section 19.1.4: case-insensitive scheme and host, default port), so
// that a client's spelling of the same URI is accepted and any other is
// not.
func sameURI(a, b string) bool {
	if a == b {
		return true
	}
	var ua, ub sip.Uri
	if sip.ParseUri(a, &ua) != nil || sip.ParseUri(b, &ub) != nil {
		return false
	}
	port := func(u sip.Uri) int {
		if u.Port != 0 {
			return u.Port
		}
		if strings.EqualFold(u.Scheme, "sips") {
			return 5061
		}
		return 5060
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && ua.User == ub.User && strings.EqualFold(ua.Host, ub.Host) && port(ua) == port(ub)
}
