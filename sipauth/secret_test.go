package sipauth

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// TestSharedSecretAcrossNodes: a nonce issued by one node is answered to
// another that holds the same secret, and refused by one that does not.
func TestSharedSecretAcrossNodes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := NewSecret()
	lookup := func(user, alg string) (string, bool) {
		return HA1(alg, "alice", "paysip.test", "s3cret"), user == "alice"
	}
	a := &Verifier{Realm: "paysip.test", Secret: secret, Lookup: lookup}
	b := &Verifier{Realm: "paysip.test", Secret: append([]byte(nil), secret...), Lookup: lookup}
	other := &Verifier{Realm: "paysip.test", Secret: NewSecret(), Lookup: lookup}
	chal, err := digest.ParseChallenge(a.Challenges("192.0.2.1", now, false)[0])
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "s3cret", Count: 1})
	req := Request{Authorization: cred.String(), Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}
	if _, err := other.Verify(req, now); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a node with another secret: %v", err)
	}
	if user, err := b.Verify(req, now); err != nil || user != "alice" {
		t.Fatalf("the other node: %q %v", user, err)
	}
	// The node that took the answer refuses it again (the edge sends
	// every answer to one nonce to one node: see the package comment).
	if _, err := b.Verify(req, now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay on the same node: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	raw := NewSecret()
	for name, s := range map[string]string{
		"hex": hex.EncodeToString(raw), "base64": base64.StdEncoding.EncodeToString(raw) + "\n",
		"raw url": base64.RawURLEncoding.EncodeToString(raw),
	} {
		got, err := ParseSecret(s)
		if err != nil || string(got) != string(raw) {
			t.Errorf("%s: %x %v", name, got, err)
		}
	}
	for _, s := range []string{"", "short", hex.EncodeToString(raw[:16]), "not a secret at all, spaces!"} {
		if _, err := ParseSecret(s); !errors.Is(err, ErrSecret) {
			t.Errorf("%q: %v", s, err)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "nonce.secret")
	os.WriteFile(p, []byte(hex.EncodeToString(raw)+"\n"), 0o644)
	if _, err := ReadSecretFile(p); !errors.Is(err, ErrSecret) {
		t.Fatalf("world-readable file: %v", err)
	}
	os.Chmod(p, 0o600)
	if got, err := ReadSecretFile(p); err != nil || string(got) != string(raw) {
		t.Fatalf("file: %v", err)
	}
}
