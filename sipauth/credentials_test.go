package sipauth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/icholy/digest"
)

// sippAuth is an Authorization value as sipp 3.6 writes it.
const sippAuth = `Digest username="user7",realm="paysip.test",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="AAAAAGkmp3hGhJ0b0e4oYbN9x3f2m4qV0g3pQ2Yx",response="4f1b1f2e4b7f0f5c1f0b3b7e0e0c2a11",algorithm=MD5`

func TestParseCredentials(t *testing.T) {
	ok := []struct {
		in   string
		want Credentials
	}{
		{sippAuth, Credentials{Username: "user7", Realm: "paysip.test", Cnonce: "6b8b4567", Nc: 1, QOP: "auth", URI: "sip:127.0.0.1:5060",
			Nonce: "AAAAAGkmp3hGhJ0b0e4oYbN9x3f2m4qV0g3pQ2Yx", Response: "4f1b1f2e4b7f0f5c1f0b3b7e0e0c2a11", Algorithm: "MD5"}},
		// Case-insensitive scheme and names (RFC 3261 section 7.3.1),
		// tabs and spaces around '=' and ',', quoted-pairs, UTF-8, an
		// unknown parameter with a token value of RFC 3261's wider set.
		{"dIgEsT\tUserName = \"a\\\"b\\\\c\" ,\tREALM=\"r\"\t, NC=0000000A, ext=x.y~z, userhash=TRUE, qop=\"auth\", opaque=\"é\"",
			Credentials{Username: `a"b\c`, Realm: "r", Nc: 10, Userhash: true, QOP: "auth", Opaque: "é"}},
		{`Digest username=""`, Credentials{}},
		{`Digest nc=7fffffff`, Credentials{Nc: 0x7fffffff}},
	}
	for _, c := range ok {
		got, err := ParseCredentials(c.in)
		if err != nil || got != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
	bad := []string{
		"", "Digest", "Digest ", "Digest  ", "Basic dXNlcjpwYXNz", "Digestusername=\"a\"", "Digest username",
		`Digest username=`, `Digest username="a",`, `Digest username="a" realm="r"`, `Digest ,username="a"`, `Digest =x`,
		`Digest username="a`, `Digest username="a\`, "Digest username=\"a\x00b\"", "Digest username=\"a\rb\"", "Digest username=\"a\\\nb\"",
		"Digest username=\"\xff\"", "Digest username=\"\\\xc3\xa9\"",
		`Digest username="a", Username="b"`, `Digest ext=1, EXT=2`, // RFC 7235 section 2.1: once each
		`Digest nc=1`, `Digest nc=-0000001`, `Digest nc=0000000g`, `Digest nc=80000000`, `Digest nc="00000001x"`,
		`Digest username="a", x=y z`, `Digest username:"a"`,
		"Digest " + strings.Repeat("a=b, ", MaxCredentialParams) + "c=d",
	}
	for _, in := range bad {
		if got, err := ParseCredentials(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q accepted: %+v %v", in, got, err)
		}
	}
}

// TestChallengesAsIcholy: the challenges are written as
// digest.Challenge.String wrote them, and read back by icholy/digest.
func TestChallengesAsIcholy(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, realm := range []string{"paysip.test", `we"ird\realm`} {
		v := &Verifier{Realm: realm, Secret: []byte("k"), Algorithms: []string{"SHA-256", "MD5"}}
		for _, stale := range []bool{false, true} {
			for i, c := range v.Challenges("192.0.2.1", now, stale) {
				chal, err := digest.ParseChallenge(c)
				if err != nil {
					t.Fatal(err)
				}
				want := (&digest.Challenge{Realm: realm, Nonce: chal.Nonce, Algorithm: v.Algorithms[i], QOP: []string{"auth"}, Stale: stale}).String()
				if c != want || chal.Realm != realm || chal.Stale != stale {
					t.Errorf("%s, want %s", c, want)
				}
			}
		}
	}
}

// FuzzParseCredentials: our parser never panics; what it accepts is
// clean (valid UTF-8, no control character but HTAB) and reads the same
// written back; and it agrees with icholy/digest.ParseCredentials (the
// parser it replaced) wherever both accept. Where they differ, ours is
// stricter (a parameter twice, nc not 8 hex digits, a control character
// or invalid UTF-8 in a quoted-string, an empty name or value), or it
// follows RFC 3261 where icholy does not: a tab as whitespace, a token
// character other than letters, digits and '-', a parameter name in
// another case (icholy then ignores the parameter).
func FuzzParseCredentials(f *testing.F) {
	f.Add(sippAuth)
	f.Add("dIgEsT\tUserName = \"a\\\"b\\\\c\" ,\tREALM=\"r\"\t, NC=0000000A, ext=x.y~z, userhash=TRUE, qop=\"auth\"")
	f.Add(`Digest username="a", username="b"`)
	f.Add(`Digest nc=ffffffff, nc=1`)
	f.Add("Digest username=\"\xff\"")
	f.Add(`Digest =x`)
	otherCase := regexp.MustCompile(`(?i)(username|realm|nonce|uri|response|algorithm|cnonce|opaque|qop|nc|userhash)[ \t]*=`)
	f.Fuzz(func(t *testing.T, s string) {
		ours, err := ParseCredentials(s)
		theirs, terr := digest.ParseCredentials(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v is not ErrSyntax", err)
			}
			return
		}
		fields := map[string][2]string{"username": {ours.Username}, "realm": {ours.Realm}, "nonce": {ours.Nonce}, "uri": {ours.URI},
			"response": {ours.Response}, "algorithm": {ours.Algorithm}, "cnonce": {ours.Cnonce}, "opaque": {ours.Opaque}, "qop": {ours.QOP}}
		for name, v := range fields {
			if !utf8.ValidString(v[0]) || strings.ContainsFunc(v[0], func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
				t.Fatalf("%s %q accepted from %q", name, v[0], s)
			}
		}
		// Written back (all quoted), it reads the same.
		again, err := ParseCredentials(formatCredentials(ours))
		if err != nil || again != ours {
			t.Fatalf("%q: %+v, written back and read: %+v %v", s, ours, again, err)
		}
		if terr != nil {
			if !strings.ContainsAny(s, "\t.!%*_+`'~") {
				t.Fatalf("%q accepted (%+v), icholy refuses it for no reason of ours: %v", s, ours, terr)
			}
			return
		}
		recased := map[string]bool{}
		for _, m := range otherCase.FindAllString(s, -1) {
			name := strings.TrimRight(m, " \t=")
			if name != strings.ToLower(name) {
				recased[strings.ToLower(name)] = true
			}
		}
		theirFields := map[string]string{"username": theirs.Username, "realm": theirs.Realm, "nonce": theirs.Nonce, "uri": theirs.URI,
			"response": theirs.Response, "algorithm": theirs.Algorithm, "cnonce": theirs.Cnonce, "opaque": theirs.Opaque, "qop": theirs.QOP}
		for name, v := range fields {
			if v[0] != theirFields[name] && !recased[name] {
				t.Fatalf("%q: %s %q, icholy %q", s, name, v[0], theirFields[name])
			}
		}
		if ours.Nc != theirs.Nc && !recased["nc"] || ours.Userhash != theirs.Userhash && !recased["userhash"] {
			t.Fatalf("%q: nc %d userhash %v, icholy %d %v", s, ours.Nc, ours.Userhash, theirs.Nc, theirs.Userhash)
		}
	})
}

// formatCredentials writes c as a Digest value, every string quoted.
func formatCredentials(c Credentials) string {
	q := func(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }
	var nc [8]byte
	const hexdigits = "0123456789abcdef"
	for i := range nc {
		nc[i] = hexdigits[c.Nc>>(28-4*i)&0xf]
	}
	s := "Digest username=" + q(c.Username) + ", realm=" + q(c.Realm) + ", nonce=" + q(c.Nonce) + ", uri=" + q(c.URI) +
		", response=" + q(c.Response) + ", algorithm=" + q(c.Algorithm) + ", cnonce=" + q(c.Cnonce) + ", opaque=" + q(c.Opaque) +
		", qop=" + q(c.QOP) + ", nc=" + string(nc[:])
	if c.Userhash {
		s += ", userhash=true"
	}
	return s
}

func BenchmarkParseCredentials(b *testing.B) {
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := ParseCredentials(sippAuth); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("icholy", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := digest.ParseCredentials(sippAuth); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerify: one accepted REGISTER's credentials checked (each
// with a new nonce count), and one challenge written.
func BenchmarkVerify(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	v := &Verifier{Realm: "paysip.test", Secret: []byte("0123456789abcdef"),
		Lookup: func(user, alg string) (string, bool) { return HA1(alg, user, "paysip.test", "pw"), true }}
	chal, err := digest.ParseChallenge(v.Challenges("192.0.2.1", now, false)[0])
	if err != nil {
		b.Fatal(err)
	}
	creds := make([]string, 1000)
	for i := range creds {
		c, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:paysip.test", Username: "alice", Password: "pw", Count: i + 1, Cnonce: "c0ffee"})
		creds[i] = c.String()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(creds) == 0 {
			v = &Verifier{Realm: v.Realm, Secret: v.Secret, Lookup: v.Lookup}
		}
		if _, err := v.Verify(Request{Authorization: creds[i%len(creds)], Method: "REGISTER", URI: "sip:paysip.test", Client: "192.0.2.1"}, now); err != nil {
			b.Fatal(err)
		}
		v.Challenges("192.0.2.1", now, false)
	}
}
