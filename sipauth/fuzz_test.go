package sipauth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// FuzzVerifyChecked: whatever Authorization value and method come in, the
// answer is a user or one of the documented errors (so the server answers
// 401/403, never 500), and an accepted header really proves the password:
// its response is the digest of the user's password over its own nonce,
// nc, cnonce and URI, computed here independently with icholy/digest.
// (FuzzVerify in sipauth_test.go only checks for panics.)
func FuzzVerifyChecked(f *testing.F) {
	const password = "s3cret"
	now := time.Unix(1_800_000_000, 0)
	// A verifier remembers the nonce counts it accepted: each run gets a
	// fresh one (same secret), so a seed is not a replay of the setup.
	mk := func() *Verifier {
		return &Verifier{Realm: "r", Secret: []byte("0123456789abcdef"), Algorithms: []string{"MD5", "SHA-256"},
			Lookup: func(user, alg string) (string, bool) { return HA1(alg, user, "r", password), user == "alice" }}
	}
	const client = "198.51.100.7"
	v := mk()
	for _, c := range v.Challenges(client, now, false) {
		chal, err := digest.ParseChallenge(c)
		if err != nil {
			f.Fatal(err)
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:r", Username: "alice", Password: password, Count: 1, Cnonce: "c0ffee"})
		if err != nil {
			f.Fatal(err)
		}
		if u, err := mk().Verify(Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:r", Client: client}, now); err != nil || u != "alice" {
			f.Fatalf("the valid seed is refused: %v", err)
		}
		f.Add(cred.String(), "REGISTER")
		f.Add(strings.Replace(cred.String(), "alice", "bob", 1), "REGISTER")
		f.Add(cred.String(), "INVITE")
	}
	f.Add("Digest", "MESSAGE")
	f.Add(`Digest username="alice", realm="r", nonce="", uri="", response="", qop=auth-int`, "MESSAGE")
	f.Fuzz(func(t *testing.T, header, method string) {
		user, err := mk().Verify(Request{Authorization: header, Method: method, URI: "sip:r", Client: client}, now)
		if err != nil {
			if user != "" {
				t.Fatalf("user %q with error %v", user, err)
			}
			for _, k := range []error{ErrNoCredentials, ErrBadCredentials, ErrUnknownUser, ErrStale} {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("undocumented error %v", err)
		}
		cred, err := ParseCredentials(header) // what Verify read; the digest is computed by icholy/digest
		if err != nil || user != "alice" || cred.Username != user {
			t.Fatalf("accepted %q as %q (%v)", header, user, err)
		}
		alg := cred.Algorithm
		if alg == "" {
			alg = "MD5"
		}
		want, err := digest.Digest(&digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: alg, QOP: []string{cred.QOP}},
			digest.Options{Method: method, URI: cred.URI, Username: user, Password: password, Count: cred.Nc, Cnonce: cred.Cnonce})
		if cred.QOP == "" {
			want, err = digest.Digest(&digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: alg},
				digest.Options{Method: method, URI: cred.URI, Username: user, Password: password})
		}
		if err != nil || !strings.EqualFold(want.Response, cred.Response) {
			t.Fatalf("accepted a response %q that is not the password's %q (%v): %s", cred.Response, fmt.Sprint(want), err, header)
		}
	})
}
