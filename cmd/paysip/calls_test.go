package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/paysip/paysip/internal/regtest"
)

type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &out}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", args[0], out.String())
		}
	})
	return p
}

func (p *proc) waitFor(t *testing.T, s string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if strings.Contains(p.out.String(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("never printed %q:\n%s", s, p.out.String())
}

// TestPaidCallCommands runs the server, a payee and a caller as separate
// paysip processes on one regtest node: a paid call over the DataChannel,
// then one over SIP MESSAGE; each closes its channel and the payee's
// settlement confirms on chain.
func TestPaidCallCommands(t *testing.T) {
	cw := startCallWorld(t, "--tone")
	bin, env, common, sipAddr, payee := cw.bin, cw.env, cw.common, cw.sipAddr, cw.payee

	for _, transport := range []string{"datachannel", "message"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bin, append([]string{"call", "sip:tutor@paysip.test", "--wallet", "caller", "--sip-server", sipAddr,
			"--seconds", "5", "--tick", "100ms", "--close", "--transport", transport, "--loopback"}, common...)...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s call: %v\n%s", transport, err, out)
		}
		m := regexp.MustCompile(`call paid (\d+) sat; channel closed, settlement ([0-9a-f]{64})`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("%s call output:\n%s", transport, out)
		}
		var paid int64
		fmt.Sscan(string(m[1]), &paid)
		if paid != 5000 {
			t.Fatalf("%s: paid %d for 5 ticks at 1,000 sat each", transport, paid)
		}
		env.Mine(1)
		h, _ := chainhash.NewHashFromStr(string(m[2]))
		if st, err := env.Chain.TxStatus(context.Background(), *h); err != nil || st.Confirmations != 1 {
			t.Fatalf("%s settlement %s: %+v %v", transport, m[2], st, err)
		}
		payee.waitFor(t, "("+transport+")")
	}
}

// TestSecondCallResumes: with a payee that keeps channels open, a second
// call from the same payer resumes the channel (no new funding); a caller
// whose price limit is below the payee's price refuses its terms.
func TestSecondCallResumes(t *testing.T) {
	cw := startCallWorld(t, "--keep-open")
	bin, common, sipAddr := cw.bin, cw.common, cw.sipAddr
	call := func(extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append([]string{"call", "sip:tutor@paysip.test", "--wallet", "caller", "--sip-server", sipAddr, "--seconds", "3", "--tick", "100ms", "--loopback"}, extra...)
		out, err := exec.CommandContext(ctx, bin, append(args, common...)...).CombinedOutput()
		return string(out), err
	}
	first, err := call()
	if err != nil {
		t.Fatalf("first call: %v\n%s", err, first)
	}
	m := regexp.MustCompile(`channel ([0-9a-f]{64}:\d+) open`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first call opened no channel:\n%s", first)
	}
	second, err := call()
	if err != nil {
		t.Fatalf("second call: %v\n%s", err, second)
	}
	if !strings.Contains(second, "resuming channel "+m[1]) || strings.Contains(second, " open: ") {
		t.Fatalf("second call did not resume %s:\n%s", m[1], second)
	}
	// A caller that pays at most 30,000 sat/min refuses the payee's terms.
	third, err := call("--max-price", "30000")
	if err == nil || !strings.Contains(third, "price 60000 sat/min above the caller's limit 30000") {
		t.Fatalf("call with a lower price limit: %v\n%s", err, third)
	}
}

// callWorld is a regtest node, 'paysip serve --open', 'paysip payee' as
// sip:tutor@paysip.test at 60,000 sat/min, and a funded caller wallet.
type callWorld struct {
	bin, sipAddr string
	env          *regtest.Env
	common       []string // data directory and node flags
	payee        *proc
}

func startCallWorld(t *testing.T, payeeFlags ...string) *callWorld {
	t.Helper()
	cw := &callWorld{bin: paysipBin(t), env: regtest.New(t)}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	cw.sipAddr = l.Addr().String()
	l.Close()
	n := cw.env.Node
	cw.common = []string{"--datadir", t.TempDir(), "--btcd-rpc", n.RPCAddr, "--btcd-user", n.RPCUser, "--btcd-pass", n.RPCPass}
	startProc(t, cw.bin, append([]string{"serve", "--open", "--domain", "paysip.test", "--sip-addr", cw.sipAddr, "--http-addr", "127.0.0.1:0"}, cw.common...)...).waitFor(t, "paysip serving")
	args := append([]string{"payee", "--aor", "sip:tutor@paysip.test", "--price", "60000", "--wallet", "tutor",
		"--sip-server", cw.sipAddr, "--tick", "100ms", "--loopback"}, payeeFlags...)
	cw.payee = startProc(t, cw.bin, append(args, cw.common...)...)
	cw.payee.waitFor(t, "ready at 60000 sat/min")
	out, err := exec.Command(cw.bin, append(append([]string{"wallet", "--wallet", "caller"}, cw.common...), "address")...).Output()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.DecodeAddress(strings.TrimSpace(string(out)), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatalf("address %q: %v", out, err)
	}
	cw.env.Fund(addr, 3_000_000)
	return cw
}
