package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/paysip/paysip/internal/regtest"
)

// TestHelpExitsZero: help, at every level, is not an error.
func TestHelpExitsZero(t *testing.T) {
	bin := paysipBin(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"user", "--help"}, {"user", "add", "--help"}, {"call", "--help"}, {"wallet", "send", "--help"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("paysip %v: %v\n%s", args, err, out)
		}
	}
	if out, err := exec.Command(bin).CombinedOutput(); err == nil {
		t.Errorf("paysip without a command succeeded:\n%s", out)
	}
	// Shell completion, by the library.
	cmd := exec.Command(bin, "call", "--tr")
	cmd.Env = append(os.Environ(), "GO_FLAGS_COMPLETION=1")
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "--transport" {
		t.Errorf("completion of 'call --tr': %v %q", err, out)
	}
}

// TestAccountsPerDomain: options anywhere (after the name too); the domain
// from paysip.conf, overridden by the environment and then the command
// line; the same name in two domains; a mistake removed; a new password;
// 'serve' says how many accounts its domain has.
func TestAccountsPerDomain(t *testing.T) {
	bin := paysipBin(t)
	dir := t.TempDir()
	user := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"user"}, args...)...)
		cmd.Env = append(append(os.Environ(), "PAYSIP_USER_PASSWORD=correct horse"), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("paysip user %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if err := os.WriteFile(filepath.Join(dir, "paysip.conf"), []byte("# the domain served\ndomain = example.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	user(nil, "add", "tutor", "--datadir", dir)                                // example.test, from the file
	user(nil, "add", "tutor", "--datadir", dir, "--domain", "paysip.local")    // the mistake
	user([]string{"PAYSIP_DOMAIN=env.test"}, "add", "--datadir", dir, "tutor") // the environment over the file
	if got := user(nil, "list", "--datadir", dir); got != "sip:tutor@env.test\nsip:tutor@example.test\nsip:tutor@paysip.local\n" {
		t.Fatalf("list:\n%s", got)
	}
	user(nil, "remove", "tutor", "--domain", "paysip.local", "--datadir", dir)
	user(nil, "remove", "tutor", "--domain", "env.test", "--datadir", dir)
	user(nil, "passwd", "tutor", "--datadir", dir)
	if got := user(nil, "list", "--datadir", dir); got != "sip:tutor@example.test\n" {
		t.Fatalf("list after removals:\n%s", got)
	}
	// serve, on an external node, counts its domain's accounts.
	env := regtest.New(t)
	n := env.Node
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	sipAddr := l.Addr().String()
	l.Close()
	p := startProc(t, bin, "serve", "--datadir", dir, "--sip-addr", sipAddr, "--http-addr", "127.0.0.1:0",
		"--btcd-rpc", n.RPCAddr, "--btcd-user", n.RPCUser, "--btcd-pass", n.RPCPass)
	p.waitFor(t, "paysip serving example.test")
	p.waitFor(t, "accounts=1")
}

// TestCallSizedPools: a caller holding 500,000 sat places an 8-second
// call (a pool sized to it, not 1,000,000 sat; the payee raises it to its
// smallest pool), and right after it a second call opens a new channel
// from the first funding's change (blocks come every second, as the
// embedded node mines them; wallet's TestSpendsOwnUnconfirmedChange covers
// the change spent before any block).
func TestCallSizedPools(t *testing.T) {
	cw := startCallWorld(t)
	defer cw.env.Node.MineEvery(time.Second)()
	out, err := exec.Command(cw.bin, append([]string{"wallet", "--wallet", "small"}, append(cw.common, "address")...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.DecodeAddress(strings.TrimSpace(string(out)), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	cw.env.Fund(addr, 500_000)
	call := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args := append([]string{"call", "sip:tutor@paysip.test", "--wallet", "small", "--sip-server", cw.sipAddr, "--seconds", "8", "--tick", "100ms", "--close", "--loopback"}, cw.common...)
		out, err := exec.CommandContext(ctx, cw.bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("call: %v\n%s", err, out)
		}
		return string(out)
	}
	first := call()
	m := regexp.MustCompile(`pool of (\d+) sat: the call needs 8000 sat`).FindStringSubmatch(first)
	if m == nil || !strings.Contains(first, "costs 60000 sat/min (the server's 402 Paysip-Terms)") || !strings.Contains(first, "call paid 8000 sat") {
		t.Fatalf("first call:\n%s", first)
	}
	second := call()
	if !strings.Contains(second, "call paid 8000 sat") {
		t.Fatalf("second call:\n%s", second)
	}
}
