package sipauth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

func TestDigest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Realm: "paysip.test", Secret: []byte("k"), Algorithms: []string{"SHA-256", "MD5"}, Lookup: func(user, alg string) (string, bool) {
		if user != "alice" {
			return "", false
		}
		return HA1(alg, "alice", "paysip.test", "s3cret"), true
	}}
	chs := v.Challenges("192.0.2.1", now, false)
	if len(chs) != 2 {
		t.Fatal(chs)
	}
	for i, c := range chs {
		chal, err := digest.ParseChallenge(c)
		if err != nil {
			t.Fatal(err)
		}
		// A client (icholy/digest, as sipgo's client uses it) answers.
		// (The challenges share one nonce: each answer its own count.)
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "s3cret", Count: i + 1})
		if err != nil {
			t.Fatal(err)
		}
		user, err := v.Verify(Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now.Add(time.Second))
		if err != nil || user != "alice" {
			t.Fatalf("%s: %v", chal.Algorithm, err)
		}
		// Wrong method, wrong password, stale nonce, unknown user.
		if _, err := v.Verify(Request{Authorization: cred.String(), Method: "INVITE", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong method: %v", err)
		}
		bad, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "nope", Count: 1})
		if _, err := v.Verify(Request{Authorization: bad.String(), Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := v.Verify(Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now.Add(NonceLifetime+time.Second)); !errors.Is(err, ErrStale) {
			t.Fatalf("stale: %v", err)
		}
		eve, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "eve", Password: "x", Count: 1})
		if _, err := v.Verify(Request{Authorization: eve.String(), Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("unknown: %v", err)
		}
	}
	// A forged nonce.
	forged := `Digest username="alice", realm="paysip.test", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:paysip.test", response="00"`
	if _, err := v.Verify(Request{Authorization: forged, Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("forged nonce: %v", err)
	}
	if _, err := v.Verify(Request{Authorization: "garbage", Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("garbage: %v", err)
	}
}

// FuzzVerify: any Authorization value is refused or accepted, never a
// panic.
func FuzzVerify(f *testing.F) {
	v := &Verifier{Realm: "r", Secret: []byte("k"), Lookup: func(string, string) (string, bool) { return "00", true }}
	f.Add(`Digest username="a", realm="r", nonce="x", uri="sip:r", response="00", qop=auth, nc=00000001, cnonce="c"`)
	f.Add("Digest")
	f.Fuzz(func(t *testing.T, h string) {
		v.Verify(Request{Authorization: h, Method: "REGISTER", URI: "sip:r", Client: "192.0.2.1"}, time.Unix(0, 0))
	})
}

func TestChallengeAlgorithms(t *testing.T) {
	v := &Verifier{Realm: "r", Secret: []byte("k")}
	if c := v.Challenges("192.0.2.1", time.Unix(0, 0), false); len(c) != 1 || !strings.Contains(c[0], "MD5") {
		t.Fatalf("default %v", c)
	}
	v.Algorithms = []string{"SHA-256", "MD5"}
	if c := v.Challenges("192.0.2.1", time.Unix(0, 0), false); len(c) != 2 || !strings.Contains(c[0], "SHA-256") {
		t.Fatalf("configured %v", c)
	}
	// An algorithm not offered is refused even with right credentials.
	v.Algorithms = []string{"MD5"}
	v.Lookup = func(string, string) (string, bool) { return HA1("SHA-256", "a", "r", "p"), true }
	chal, _ := digest.ParseChallenge(strings.Replace(v.Challenges("192.0.2.1", time.Unix(0, 0), false)[0], "MD5", "SHA-256", 1))
	cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:r", Username: "a", Password: "p", Count: 1})
	if _, err := v.Verify(Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:r", Client: "192.0.2.1"}, time.Unix(1, 0)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("SHA-256 not offered but accepted: %v", err)
	}
}

// TestReplay (issue 10, finding 5): an Authorization is good once per
// nonce count; the digest-uri must be the Request-URI; qop=auth is
// required; the table of counts is bounded and a forgotten nonce is stale.
func TestReplay(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Realm: "paysip.test", Secret: []byte("k"), MaxNonces: 4, Lookup: func(user, alg string) (string, bool) {
		return HA1(alg, user, "paysip.test", "s3cret"), true
	}}
	answer := func(method, uri string, nc int, at time.Time) (*digest.Challenge, string) {
		chal, err := digest.ParseChallenge(v.Challenges("192.0.2.1", at, false)[0])
		if err != nil {
			t.Fatal(err)
		}
		cred, _ := digest.Digest(chal, digest.Options{Method: method, URI: uri, Username: "alice", Password: "s3cret", Count: nc})
		return chal, cred.String()
	}
	chal, cred := answer("MESSAGE", "sip:bob@paysip.test", 1, now)
	if _, err := v.Verify(Request{Authorization: cred, Method: "MESSAGE", URI: "sip:bob@paysip.test", Client: "192.0.2.1"}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(Request{Authorization: cred, Method: "MESSAGE", URI: "sip:bob@paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrReplay) || !errors.Is(err, ErrStale) {
		t.Fatalf("replayed Authorization: %v", err)
	}
	// The same nonce with a higher count is the client's next request.
	next, _ := digest.Digest(chal, digest.Options{Method: "MESSAGE", URI: "sip:bob@paysip.test", Username: "alice", Password: "s3cret", Count: 2})
	if _, err := v.Verify(Request{Authorization: next.String(), Method: "MESSAGE", URI: "sip:bob@paysip.test", Client: "192.0.2.1"}, now); err != nil {
		t.Fatalf("nc=2: %v", err)
	}
	// Another Request-URI (the same spelled differently is fine).
	_, cred = answer("MESSAGE", "sip:bob@paysip.test", 1, now)
	if _, err := v.Verify(Request{Authorization: cred, Method: "MESSAGE", URI: "sip:mallory@paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrURI) {
		t.Fatalf("digest-uri of another Request-URI: %v", err)
	}
	if _, err := v.Verify(Request{Authorization: cred, Method: "MESSAGE", URI: "sip:bob@PAYSIP.test:5060", Client: "192.0.2.1"}, now); err != nil {
		t.Fatalf("same URI spelled differently: %v", err)
	}
	// No qop (RFC 2069): refused.
	chal, _ = answer("REGISTER", "sip:paysip.test", 1, now)
	chal.QOP = nil
	old, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "s3cret"})
	if _, err := v.Verify(Request{Authorization: old.String(), Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("digest without qop: %v", err)
	}
	// Bounded: more nonces than MaxNonces, issued over time; the oldest
	// are forgotten and then stale, never replayable.
	var first string
	for i := range 10 {
		at := now.Add(time.Duration(i) * time.Second)
		_, c := answer("REGISTER", "sip:paysip.test", 1, at)
		if i == 0 {
			first = c
		}
		if _, err := v.Verify(Request{Authorization: c, Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, at); err != nil {
			t.Fatalf("nonce %d: %v", i, err)
		}
		if v.Nonces() > 4 {
			t.Fatalf("%d nonces remembered, limit 4", v.Nonces())
		}
	}
	if _, err := v.Verify(Request{Authorization: first, Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now.Add(10*time.Second)); !errors.Is(err, ErrStale) {
		t.Fatalf("forgotten nonce replayed: %v", err)
	}
}

// TestNonceBoundToClient: a nonce is answered only from the address it
// was sent to, so an attacker who got one cannot answer it from a forged
// source (a REGISTER spoofing a victim's address).
func TestNonceBoundToClient(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Realm: "r", Secret: []byte("k"), Lookup: func(user, alg string) (string, bool) { return HA1(alg, user, "r", "p"), true }}
	chal, _ := digest.ParseChallenge(v.Challenges("192.0.2.1", now, false)[0])
	cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:r", Username: "a", Password: "p", Count: 1})
	if _, err := v.Verify(Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:r", Client: "198.51.100.9"}, now); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("nonce answered from another address: %v", err)
	}
	if _, err := v.Verify(Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:r", Client: "192.0.2.1"}, now); err != nil {
		t.Fatalf("from its own address: %v", err)
	}
}
