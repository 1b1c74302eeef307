package store

import (
	"errors"
	"testing"

	"github.com/paysip/paysip/sipauth"
)

// TestMigration2To3: accounts made under schema 2 (names unique across
// domains) survive the move to accounts per (name, realm); then the same
// name may exist in another domain, and one can be removed or given a new
// password without touching the other.
func TestMigration2To3(t *testing.T) { eachBackend(t, testMigration2To3) }

func testMigration2To3(t *testing.T, b backend) {
	path := b.fresh(t)
	db, dl := raw(t, path)
	if err := migrateDialect(db, dl, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO users (name, realm, ha1_md5, ha1_sha256, created_at) VALUES ('tutor', 'paysip.local', 'm', 's', 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ha1, ok := st.UserHA1(ctx, "tutor", "paysip.local", "MD5"); !ok || ha1 != "m" {
		t.Fatalf("account after migration: %q %v", ha1, ok)
	}
	// The account the user meant, in the domain served.
	if err := st.AddUser(ctx, "tutor", "example.test", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(ctx, "tutor", "example.test", "correct horse"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if us, _ := st.Users(ctx, "example.test"); len(us) != 1 || us[0] != (User{"tutor", "example.test"}) {
		t.Fatalf("users of example.test: %v", us)
	}
	if us, _ := st.Users(ctx, ""); len(us) != 2 {
		t.Fatalf("all users: %v", us)
	}
	// The mistake is undone; the right account stays.
	if err := st.RemoveUser(ctx, "tutor", "paysip.local"); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveUser(ctx, "tutor", "paysip.local"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("removing twice: %v", err)
	}
	before, _ := st.UserHA1(ctx, "tutor", "example.test", "MD5")
	if err := st.SetPassword(ctx, "tutor", "example.test", "battery staple"); err != nil {
		t.Fatal(err)
	}
	if after, ok := st.UserHA1(ctx, "tutor", "example.test", "MD5"); !ok || after == before {
		t.Fatalf("password not changed: %q -> %q", before, after)
	}
	if err := st.SetPassword(ctx, "nobody", "example.test", "battery staple"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("password of nobody: %v", err)
	}
}

// TestHA1MatchesSipauth: the store's HA1 values are sipauth's, which the
// registrar checks digests against.
func TestHA1MatchesSipauth(t *testing.T) {
	for _, c := range [][3]string{{"tutor", "paysip.test", "correct horse"}, {"a", "b", ""}, {"ü", "x.y", "p:w"}} {
		if got, want := ha1MD5(c[0], c[1], c[2]), sipauth.HA1("MD5", c[0], c[1], c[2]); got != want {
			t.Errorf("MD5 %v: %s, sipauth %s", c, got, want)
		}
		if got, want := ha1SHA256(c[0], c[1], c[2]), sipauth.HA1("SHA-256", c[0], c[1], c[2]); got != want {
			t.Errorf("SHA-256 %v: %s, sipauth %s", c, got, want)
		}
	}
}
