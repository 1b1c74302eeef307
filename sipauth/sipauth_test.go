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
	chs := v.Challenges(now, false)
	if len(chs) != 2 {
		t.Fatal(chs)
	}
	for _, c := range chs {
		chal, err := digest.ParseChallenge(c)
		if err != nil {
			t.Fatal(err)
		}
		// A client (icholy/digest, as sipgo's client uses it) answers.
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "s3cret", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		user, err := v.Verify(cred.String(), "REGISTER", now.Add(time.Second))
		if err != nil || user != "alice" {
			t.Fatalf("%s: %v", chal.Algorithm, err)
		}
		// Wrong method, wrong password, stale nonce, unknown user.
		if _, err := v.Verify(cred.String(), "INVITE", now); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong method: %v", err)
		}
		bad, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "nope", Count: 1})
		if _, err := v.Verify(bad.String(), "REGISTER", now); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := v.Verify(cred.String(), "REGISTER", now.Add(NonceLifetime+time.Second)); !errors.Is(err, ErrStale) {
			t.Fatalf("stale: %v", err)
		}
		eve, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "eve", Password: "x", Count: 1})
		if _, err := v.Verify(eve.String(), "REGISTER", now); !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("unknown: %v", err)
		}
	}
	// A forged nonce.
	forged := `Digest username="alice", realm="paysip.test", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:paysip.test", response="00"`
	if _, err := v.Verify(forged, "REGISTER", now); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("forged nonce: %v", err)
	}
	if _, err := v.Verify("garbage", "REGISTER", now); !errors.Is(err, ErrBadCredentials) {
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
		v.Verify(h, "REGISTER", time.Unix(0, 0))
	})
}

func TestChallengeAlgorithms(t *testing.T) {
	v := &Verifier{Realm: "r", Secret: []byte("k")}
	if c := v.Challenges(time.Unix(0, 0), false); len(c) != 1 || !strings.Contains(c[0], "MD5") {
		t.Fatalf("default %v", c)
	}
	v.Algorithms = []string{"SHA-256", "MD5"}
	if c := v.Challenges(time.Unix(0, 0), false); len(c) != 2 || !strings.Contains(c[0], "SHA-256") {
		t.Fatalf("configured %v", c)
	}
	// An algorithm not offered is refused even with right credentials.
	v.Algorithms = []string{"MD5"}
	v.Lookup = func(string, string) (string, bool) { return HA1("SHA-256", "a", "r", "p"), true }
	chal, _ := digest.ParseChallenge(strings.Replace(v.Challenges(time.Unix(0, 0), false)[0], "MD5", "SHA-256", 1))
	cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:r", Username: "a", Password: "p", Count: 1})
	if _, err := v.Verify(cred.String(), "REGISTER", time.Unix(1, 0)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("SHA-256 not offered but accepted: %v", err)
	}
}
