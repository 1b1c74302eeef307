package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paysip/paysip/internal/pgtest"
	"github.com/paysip/paysip/store"
)

// TestDBMigrate: 'paysip db migrate' moves an SQLite store (accounts,
// bindings, a channel) into Postgres, checked; a second run is refused,
// with --merge it adds nothing; the Postgres store then answers as the
// SQLite one did.
func TestDBMigrate(t *testing.T) {
	bin := paysipBin(t)
	srv := pgtest.New(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "paysip.db")
	src, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.AddUser(ctx, "tutor", "paysip.test", "correct horse"); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	if err := src.PutBinding(ctx, store.StoredBinding{AOR: "sip:tutor@paysip.test", Key: "k", Expires: exp, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	secret, _ := src.SharedSecret(ctx, "sip-nonce", 32)
	src.Close()

	url := srv.NewDatabase(t)
	migrate := func(extra ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"db", "migrate", "--from", "sqlite:" + path, "--to", url}, extra...)...).CombinedOutput()
		return string(out), err
	}
	out, err := migrate()
	if err != nil || !strings.Contains(out, "checked: the postgres store holds every row of the sqlite store") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if out, err := migrate(); err == nil || !strings.Contains(out, "not empty") {
		t.Fatalf("second run into a filled store: %v\n%s", err, out)
	}
	if out, err := migrate("--merge"); err != nil || !regexp.MustCompile(`users\s+1\s+0\s+1\n`).MatchString(out) {
		t.Fatalf("merge run: %v\n%s", err, out)
	}
	dst, err := store.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, ok := dst.UserHA1(ctx, "tutor", "paysip.test", "SHA-256"); !ok {
		t.Fatal("account not moved")
	}
	if b, _ := dst.Bindings(ctx, "sip:tutor@paysip.test", time.Now()); len(b) != 1 {
		t.Fatalf("bindings moved: %+v", b)
	}
	if s, _ := dst.SharedSecret(ctx, "sip-nonce", 32); string(s) != string(secret) {
		t.Fatal("secret not moved")
	}
	// A source that does not exist is not created empty and copied.
	raw, err := exec.Command(bin, "db", "migrate", "--from", filepath.Join(t.TempDir(), "nonesuch.db"), "--to", srv.NewDatabase(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(raw), "no such file") {
		t.Fatalf("missing source: %v\n%s", err, raw)
	}
}
