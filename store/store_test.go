package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/channel"
)

var ctx = context.Background()

func key(name string) *btcec.PrivateKey {
	h := sha256.Sum256([]byte(name))
	k, _ := btcec.PrivKeyFromBytes(h[:])
	return k
}

// record makes a channel record whose funding is unique to n.
func record(t testing.TB, role Role, n int) Record {
	payer, payee := key(fmt.Sprint("payer", n)), key("payee")
	script := append([]byte{0, 20}, make([]byte, 20)...)
	ws, _ := channel.MultisigScript(payer.PubKey(), payee.PubKey())
	funding := wire.NewMsgTx(2)
	funding.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: uint32(n)}})
	funding.AddTxOut(wire.NewTxOut(1_000_000, channel.P2WSH(ws)))
	ch, err := channel.NewChannel(wire.OutPoint{Hash: funding.TxHash()}, 1_000_000, payer.PubKey(), payee.PubKey(), 900, script)
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Role: role, Peer: "sip:tutor@example.org", KeyIndex: uint32(n), Channel: ch, FundingTx: funding}
	if role == Payer {
		r.RefundTx, _ = ch.RefundTx(300)
	}
	return r
}

func open(t testing.TB) (*DB, string) {
	path := filepath.Join(t.TempDir(), "paysip.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func TestChannelRoundTrip(t *testing.T) { eachBackend(t, testChannelRoundTrip) }

func testChannelRoundTrip(t *testing.T, b backend) {
	d, path := b.open(t)
	r := record(t, Payee, 1)
	if err := d.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.Insert(ctx, r); err == nil {
		t.Fatal("inserted the same channel twice")
	}
	if err := d.PayeePayment(ctx, r.ID(), 5000, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	// Never lower, never equal.
	for _, v := range []int64{4000, 5000} {
		if err := d.PayeePayment(ctx, r.ID(), v, []byte{9}); !errors.Is(err, ErrNotStored) {
			t.Fatalf("stored %d over 5000: %v", v, err)
		}
	}
	if err := d.PayeePayment(ctx, "00:0", 1, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown channel: %v", err)
	}
	p := record(t, Payer, 2)
	if err := d.Insert(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := d.PayerSigned(ctx, p.ID(), 3000, []byte{7}); err != nil {
		t.Fatal(err)
	}
	if err := d.PayerAcked(ctx, p.ID(), 3000); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(ctx, r.ID(), StateClosing, "ab"); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// Reopen: everything is there.
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err := d.Get(ctx, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.BestSat != 5000 || string(got.BestSig) != "\x01\x02" || got.State != StateClosing || got.CloseTxID != "ab" ||
		got.Channel.ID() != r.ID() || got.Channel.CapacitySat != 1_000_000 || !got.Channel.PayerKey.IsEqual(r.Channel.PayerKey) {
		t.Fatalf("got %+v", got)
	}
	pg, _ := d.Get(ctx, p.ID())
	if pg.SignedSat != 3000 || pg.AckedSat != 3000 || pg.RefundTx.TxHash() != p.RefundTx.TxHash() {
		t.Fatalf("payer %+v", pg)
	}
	all, _ := d.List(ctx)
	open, _ := d.List(ctx, StateOpen)
	if len(all) != 2 || len(open) != 1 || open[0].ID() != p.ID() {
		t.Fatalf("list %d, open %d", len(all), len(open))
	}
	if _, err := d.Get(ctx, "00:0"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

// TestConcurrentWrites: many channels writing at once all land, through
// group commits.
func TestConcurrentWrites(t *testing.T) { eachBackend(t, testConcurrentWrites) }

func testConcurrentWrites(t *testing.T, b backend) {
	d, _ := b.open(t)
	const n = 50
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		r := record(t, Payee, i)
		if err := d.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(1); v <= 20; v++ {
				if err := d.PayeePayment(ctx, r.ID(), v*1000, []byte{byte(v)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all, _ := d.List(ctx)
	for _, r := range all {
		if r.BestSat != 20_000 {
			t.Fatalf("%s holds %d", r.ID(), r.BestSat)
		}
	}
}

func TestRefusesForeignAndNewer(t *testing.T) {
	dir := t.TempDir()

	// Not SQLite at all: refused, untouched.
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte("hello, this is not a database at all"), 0o600)
	if _, err := Open(junk); !errors.Is(err, ErrForeign) {
		t.Fatalf("junk: %v", err)
	}
	if b, _ := os.ReadFile(junk); string(b) != "hello, this is not a database at all" {
		t.Fatal("junk file overwritten")
	}

	// Another application's SQLite database: refused.
	foreign := filepath.Join(dir, "foreign.db")
	db, _ := sql.Open("sqlite", foreign)
	db.Exec("CREATE TABLE t (x)")
	db.Close()
	if _, err := Open(foreign); !errors.Is(err, ErrForeign) {
		t.Fatalf("foreign: %v", err)
	}

	// A database from a newer paysip: refused, version unchanged.
	newer := filepath.Join(dir, "newer.db")
	d, err := Open(newer)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	db, _ = sql.Open("sqlite", newer)
	db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion+1))
	db.Close()
	if _, err := Open(newer); !errors.Is(err, ErrTooNew) {
		t.Fatalf("newer: %v", err)
	}
	db, _ = sql.Open("sqlite", newer)
	var v int
	db.QueryRow("PRAGMA user_version").Scan(&v)
	db.Close()
	if v != SchemaVersion+1 {
		t.Fatalf("version rewritten to %d", v)
	}
}

// raw opens the database dsn names behind the store's back, in its
// dialect.
func raw(t testing.TB, name string) (*sql.DB, *dialect) {
	t.Helper()
	driver, source, dl := "sqlite", dsn(name), sqliteDialect
	if IsPostgres(name) {
		driver, source, dl = "pgx", name, postgresDialect
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dl
}

// schemaMeta reads the application id and schema version of a database.
func schemaMeta(t testing.TB, db *sql.DB, dl *dialect) meta {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	m, err := dl.readMeta(tx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMigrationsFromEmpty runs every migration in order on an empty
// database and checks the marks and the tables after.
func TestMigrationsFromEmpty(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, name := b.open(t)
		d.Close()
		db, dl := raw(t, name)
		if m := schemaMeta(t, db, dl); m.version != int64(SchemaVersion) || m.appID != ApplicationID {
			t.Fatalf("version %d app %#x", m.version, m.appID)
		}
		if dl == sqliteDialect {
			var mode string
			db.QueryRow("PRAGMA journal_mode").Scan(&mode)
			if mode != "wal" {
				t.Fatalf("journal mode %s", mode)
			}
		}
		for _, q := range []string{"SELECT " + columns + " FROM channels", "SELECT " + bindingColumns + " FROM bindings",
			"SELECT name, realm, ha1_md5, ha1_sha256 FROM users", "SELECT closing_owner FROM channels", "SELECT name, value FROM secrets"} {
			rows, err := db.Query(q)
			if err != nil {
				t.Fatalf("schema: %s: %v", q, err)
			}
			rows.Close()
		}
		// The byte columns are the native type.
		if dl == postgresDialect {
			var typ string
			db.QueryRow("SELECT data_type FROM information_schema.columns WHERE table_name = 'channels' AND column_name = 'funding_tx'").Scan(&typ)
			if typ != "bytea" {
				t.Fatalf("funding_tx is %q, want bytea", typ)
			}
		}
	})
}

// TestConcurrentOpen: processes starting together on a new database
// migrate it once (the schema lock), and all open.
func TestConcurrentOpen(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		if b.name == "sqlite" {
			t.Skip("one process opens an SQLite file at a time (its node's data directory)")
		}
		name := b.fresh(t)
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			go func() {
				d, err := Open(name)
				if err == nil {
					d.Close()
				}
				errs <- err
			}()
		}
		for i := 0; i < 4; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestPathWithURICharacters: a data directory whose name holds '#' or '?'
// gets its own file, with WAL and synchronous=FULL in force.
func TestPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a#b?c%d")
	os.MkdirAll(dir, 0o700)
	path := filepath.Join(dir, "paysip.db")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("store not at %s: %v", path, err)
	}
	var mode string
	var sync int
	d.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	d.db.QueryRow("PRAGMA synchronous").Scan(&sync)
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode %s synchronous %d", mode, sync)
	}
	if err := d.Insert(ctx, record(t, Payee, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestRefusesCorrupt: a file with SQLite's header but garbage after it is
// refused with an error, and left as it was.
func TestRefusesCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corrupt.db")
	junk := append([]byte("SQLite format 3\x00"), make([]byte, 4096)...)
	for i := 16; i < len(junk); i++ {
		junk[i] = byte(i * 7)
	}
	os.WriteFile(path, junk, 0o600)
	if d, err := Open(path); err == nil {
		d.Close()
		t.Fatal("opened a corrupt store")
	} else {
		t.Logf("refused: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(junk) {
		t.Fatal("corrupt file was modified")
	}
}

// TestMigration1To2: a database left at schema 1 with a channel in it is
// brought to the current schema; the channel survives and accounts work.
func TestMigration1To2(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		name := b.fresh(t)
		db, dl := raw(t, name)
		if err := migrateDialect(db, dl, 1); err != nil {
			t.Fatal(err)
		}
		// Write a channel with schema 1 only.
		r := record(t, Payee, 7)
		ch := r.Channel
		_, err := db.Exec(dl.rebind(`INSERT INTO channels (id, role, state, key_index, capacity_sat, expiry_height, payer_key, payee_key,
			payer_script, funding_tx, best_sat, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`),
			ch.ID(), "payee", "open", 7, ch.CapacitySat, int64(ch.ExpiryHeight), ch.PayerKey.SerializeCompressed(),
			ch.PayeeKey.SerializeCompressed(), ch.PayerScript, txBytes(r.FundingTx), 4242, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		st, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		db, _ = raw(t, name)
		if m := schemaMeta(t, db, dl); m.version != int64(SchemaVersion) {
			t.Fatalf("version %d", m.version)
		}
		got, err := st.Get(ctx, ch.ID())
		if err != nil || got.BestSat != 4242 {
			t.Fatalf("channel after migration: %+v %v", got, err)
		}
		if err := st.AddUser(ctx, "alice", "paysip.test", "correct horse"); err != nil {
			t.Fatal(err)
		}
		if err := st.AddUser(ctx, "alice", "paysip.test", "correct horse"); !errors.Is(err, ErrUserExists) {
			t.Fatalf("duplicate user: %v", err)
		}
		if ha1, ok := st.UserHA1(ctx, "alice", "paysip.test", "SHA-256"); !ok || len(ha1) != 64 {
			t.Fatalf("ha1 %q %v", ha1, ok)
		}
		if _, ok := st.UserHA1(ctx, "bob", "paysip.test", "MD5"); ok {
			t.Fatal("unknown user found")
		}
	})
}

// TestPostgresRefusesForeignAndNewer: a database holding another
// application's tables, or marked by a newer paysip, is refused and left
// as it was.
func TestPostgresRefusesForeignAndNewer(t *testing.T) {
	b := backendList[1]
	foreign := b.fresh(t)
	db, _ := raw(t, foreign)
	if _, err := db.Exec("CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(foreign); !errors.Is(err, ErrForeign) {
		t.Fatalf("foreign: %v", err)
	}
	var n int
	db.QueryRow("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").Scan(&n)
	if n != 1 {
		t.Fatalf("foreign database touched: %d tables", n)
	}
	newer := b.fresh(t)
	d, err := Open(newer)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	db, dl := raw(t, newer)
	db.Exec("UPDATE paysip_meta SET schema_version = $1", SchemaVersion+1)
	if _, err := Open(newer); !errors.Is(err, ErrTooNew) {
		t.Fatalf("newer: %v", err)
	}
	if m := schemaMeta(t, db, dl); m.version != int64(SchemaVersion+1) {
		t.Fatalf("version rewritten to %d", m.version)
	}
	db.Exec("UPDATE paysip_meta SET schema_version = $1, application_id = 7", SchemaVersion)
	if _, err := Open(newer); !errors.Is(err, ErrForeign) {
		t.Fatalf("other application id: %v", err)
	}
}

// TestPostgresRefusesNotDurable: a server (or a connection) where a
// commit may return before it is on disk is refused.
func TestPostgresRefusesNotDurable(t *testing.T) {
	name := backendList[1].fresh(t)
	for _, opt := range []string{"synchronous_commit%3Doff"} {
		if _, err := Open(name + "&options=-c%20" + opt); err == nil || !strings.Contains(err.Error(), "not durable") {
			t.Fatalf("opened with %s: %v", opt, err)
		}
	}
	db, _ := raw(t, name)
	if _, err := db.Exec("ALTER DATABASE " + dbName(t, db) + " SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name); err == nil || !strings.Contains(err.Error(), "synchronous_commit=off") {
		t.Fatalf("opened a database set to synchronous_commit=off: %v", err)
	}
}

func dbName(t testing.TB, db *sql.DB) string {
	var n string
	if err := db.QueryRow("SELECT current_database()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPayerSignedAfterResume: after a resume where the payee held less
// than the payer had signed (the payment in flight was lost with the payee
// that got it), the payer goes on from what the payee holds: its payments
// below the stored signed value are stored without lowering it (the most
// the payee may hold); a payment below the acknowledged is refused.
func TestPayerSignedAfterResume(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		d, _ := b.open(t)
		p := record(t, Payer, 4)
		if err := d.Insert(ctx, p); err != nil {
			t.Fatal(err)
		}
		for _, v := range []int64{1000, 2000} {
			if err := d.PayerSigned(ctx, p.ID(), v, []byte{byte(v / 1000)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.PayerAcked(ctx, p.ID(), 1000); err != nil {
			t.Fatal(err)
		}
		// Resumed: the payee holds 1000, the payer signs 1500.
		if err := d.PayerSigned(ctx, p.ID(), 1500, []byte{9}); err != nil {
			t.Fatalf("payment after a resume below the signed value: %v", err)
		}
		if err := d.PayerSigned(ctx, p.ID(), 900, []byte{9}); !errors.Is(err, ErrNotStored) {
			t.Fatalf("payment below the acknowledged: %v", err)
		}
		got, err := d.Get(ctx, p.ID())
		if err != nil {
			t.Fatal(err)
		}
		if got.SignedSat != 2000 || string(got.BestSig) != "\x02" || got.AckedSat != 1000 {
			t.Fatalf("signed %d sig %x acked %d: want 2000, 02, 1000", got.SignedSat, got.BestSig, got.AckedSat)
		}
	})
}
