// Package pgtest starts a throwaway PostgreSQL server for tests: initdb in
// a temporary directory, the server listening only on a unix socket in
// that directory, one database per test, everything removed at the end.
//
// The programs come from the Debian package postgresql (initdb and
// postgres, found in PATH or /usr/lib/postgresql/*/bin). As root they run
// as the unprivileged "postgres" user (or "nobody"), since initdb refuses
// root. One server serves a whole test binary: call Main from TestMain so
// that it is stopped when the tests end; it is also stopped if the test
// binary dies (the server is its child, with a parent-death signal). New
// starts a server for one test instead.
//
// Without the programs a test skips with one line, unless
// PAYSIP_REQUIRE_INTEROP=1, which makes it fail.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Server is a running throwaway PostgreSQL.
type Server struct {
	Dir    string // data directory and socket directory's parent
	Socket string // the directory holding the unix socket
	Port   int    // the socket's number (no TCP listener)
	User   string // the database superuser
	cmd    *exec.Cmd
	exited chan struct{}
	logs   bytes.Buffer
	mu     sync.Mutex
	admin  *sql.DB
	n      atomic.Int64
}

var (
	shared    *Server
	sharedErr error
	sharedMu  sync.Mutex
)

// Main runs a test binary's tests and then stops the shared server, if
// one was started. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Stop()
		shared = nil
	}
	return code
}

// DSN returns the URL of a new, empty database on the shared server
// (started at the first call), dropped when t ends. It skips t when
// PostgreSQL is not installed, unless PAYSIP_REQUIRE_INTEROP=1.
func DSN(t testing.TB) string {
	t.Helper()
	s := Shared(t)
	return s.NewDatabase(t)
}

// New starts a server of t's own, stopped and removed when t ends (for a
// package without a TestMain calling Main; a few seconds per server).
func New(t testing.TB) *Server {
	t.Helper()
	bin, err := FindBin()
	if err != nil {
		Skip(t, err)
	}
	s, err := Start(bin)
	if err != nil {
		t.Fatalf("starting postgres: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Shared returns the test binary's server, starting it if needed.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin, err := FindBin()
	if err != nil {
		Skip(t, err)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start(bin)
	}
	if sharedErr != nil {
		t.Fatalf("starting postgres: %v", sharedErr)
	}
	return shared
}

// Skip skips t for want of PostgreSQL, or fails it under
// PAYSIP_REQUIRE_INTEROP=1.
func Skip(t testing.TB, why error) {
	t.Helper()
	if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
		t.Fatalf("postgres is required (PAYSIP_REQUIRE_INTEROP=1): %v: apt-get install postgresql", why)
	}
	t.Skipf("postgres not installed (apt-get install postgresql): %v", why)
}

// FindBin finds the directory of initdb and postgres: PATH first, then the
// newest /usr/lib/postgresql/*/bin.
func FindBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
				return d, nil
			}
		}
	}
	return "", errors.New("no initdb and postgres in PATH or /usr/lib/postgresql/*/bin")
}

func version(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return v
}

// runAs is the user the server runs as: ourselves, or when we are root an
// unprivileged user (postgres, else nobody).
func runAs() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, "", err
		}
		return nil, u.Username, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, name, nil
	}
	return nil, "", errors.New("running as root and no postgres or nobody user to run the server as")
}

// Start initialises a cluster in a new temporary directory and starts it.
func Start(bin string) (*Server, error) {
	cred, osUser, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Socket: dir, Port: 5432, User: "paysip", exited: make(chan struct{})}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, s.logs.String())
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", s.User, "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	initdb.Stdout, initdb.Stderr = &s.logs, &s.logs
	if err := initdb.Run(); err != nil {
		return fail(fmt.Errorf("initdb (as %s): %w", osUser, err))
	}
	// No TCP: only the socket in our own directory. fsync and
	// synchronous_commit stay on (the store refuses a server without).
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", s.Socket, "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=", "-c", "max_connections=300", "-c", "shared_buffers=32MB",
		"-c", "unix_socket_permissions=0777", "-c", "logging_collector=off")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = &lockedWriter{s}, &lockedWriter{s}
	if err := s.cmd.Start(); err != nil {
		return fail(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	s.admin, err = sql.Open("pgx", s.url("postgres"))
	if err != nil {
		s.Stop()
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = s.admin.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-s.exited:
			logs := s.Logs()
			s.Stop()
			return nil, fmt.Errorf("postgres exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			logs := s.Logs()
			s.Stop()
			return nil, fmt.Errorf("postgres not ready after 60 s: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.logs.Len() > 1<<20 {
		w.s.logs.Reset()
	}
	return w.s.logs.Write(p)
}

// Logs returns what the server printed.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// url is the DSN of database name on s.
func (s *Server) url(name string) string {
	q := url.Values{"host": {s.Socket}, "port": {strconv.Itoa(s.Port)}, "user": {s.User}, "sslmode": {"disable"}}
	return "postgres:///" + name + "?" + q.Encode()
}

// NewDatabase creates an empty database, dropped when t ends, and returns
// its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	if _, err := s.admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := s.admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return s.url(name)
}

// Stop shuts the server down (fast shutdown, then kill) and removes its
// directory. Calling it again is harmless.
func (s *Server) Stop() {
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
	}
	os.RemoveAll(s.Dir)
}
