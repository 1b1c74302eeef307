package sipauth

import (
	"errors"
	"testing"
	"time"

	"github.com/icholy/digest"
)

func TestDigest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Realm: "paysip.test", Secret: []byte("k"), Lookup: func(user, alg string) (string, bool) {
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
