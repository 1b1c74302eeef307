package interop

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/store"
)

const domain = "paysip.test"

func init() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) }

// requireTool finds a program, or skips (fails under
// PAYSIP_REQUIRE_INTEROP=1) naming the Debian package that has it.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s is required (PAYSIP_REQUIRE_INTEROP=1) but not installed: apt-get install %s", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type server struct {
	*sipserver.Server
	db *store.DB
}

func startServer(t testing.TB, open bool, mod ...func(*sipserver.Config)) *server {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "paysip.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range []string{"alice", "bob", "tutor"} {
		db.AddUser(context.Background(), u, domain, u+"-password")
	}
	cfg := sipserver.Config{Domain: domain, SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Accounts: db, Open: open,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))}
	for _, m := range mod {
		m(&cfg)
	}
	srv, err := sipserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select { // done is empty if Run already failed
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return &server{Server: srv, db: db}
}

func (s *server) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.SIPPort()) }

// sipp runs sipp with a scenario from testdata; it returns its error and
// output.
type sippRun struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func sipp(t testing.TB, scenario, service string, target string, extra ...string) *sippRun {
	return sippOn(t, freePort(t, "udp"), scenario, service, target, extra...)
}

// member registers service from a port, then listens there with a UAS
// scenario (sipp maps requests to calls by Call-ID, so one run cannot do
// both).
func member(t testing.TB, s *server, scenario, service string) *sippRun {
	t.Helper()
	port := freePort(t, "udp")
	if err := sippOn(t, port, "register.xml", service, s.addr()).wait(t); err != nil {
		t.Fatalf("registering %s: %v", service, err)
	}
	return sippOn(t, port, scenario, service, s.addr())
}

func sippOn(t testing.TB, port int, scenario, service string, target string, extra ...string) *sippRun {
	t.Helper()
	bin := requireTool(t, "sipp", "sip-tester")
	dir := t.TempDir()
	args := append([]string{"-sf", filepath.Join("testdata", scenario), "-s", service, "-i", "127.0.0.1",
		"-p", fmt.Sprint(port), "-t", "u1", "-m", "1", "-timeout", "20s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"), "-nostdin"}, extra...)
	args = append(args, target)
	cmd := exec.Command(bin, args...)
	cmd.Dir, _ = os.Getwd()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &sippRun{cmd: cmd, out: &out}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
			t.Logf("sipp %s errors:\n%s", scenario, b)
		}
	})
	return r
}

func (r *sippRun) wait(t testing.TB) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(40 * time.Second):
		r.cmd.Process.Kill()
		return fmt.Errorf("sipp did not finish")
	}
}

// waitBindings waits until aor has n bindings.
func (s *server) waitBindings(t testing.TB, user string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if len(s.Registry().Lookup("sip:"+user+"@"+domain, time.Now())) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never had %d bindings", user, n)
}

func logLevel() slog.Level {
	if os.Getenv("PAYSIP_TEST_LOG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelError
}
