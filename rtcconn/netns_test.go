package rtcconn

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/internal/faulttest"
	"github.com/paysip/paysip/meter"
)

// TestAcrossHosts runs the answering peer in a network namespace of its
// own, joined to the test's by a veth pair (10.231.7.1 here, 10.231.7.2
// there: addresses that exist only on that pair): the DataChannel opens
// and audio flows between two hosts, not over loopback. It needs root and
// iproute2; elsewhere it skips.
func TestAcrossHosts(t *testing.T) {
	switch os.Getenv("PAYSIP_NETNS_CHILD") {
	case "":
	case "bridge":
		netnsBridge()
		return
	default:
		netnsChild()
		return
	}
	h := newHosts(t)
	ipBin, ns := h.ip, h.ns
	_, subnet, _ := net.ParseCIDR("10.231.7.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, offer, err := NewOffer(ctx, Config{Networks: []*net.IPNet{subnet}, Audio: AudioTone})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !strings.Contains(string(offer), "10.231.7.1") || strings.Contains(string(offer), "127.0.0.1") {
		t.Fatalf("offer candidates:\n%s", offer)
	}
	child := exec.CommandContext(ctx, ipBin, "netns", "exec", ns, os.Args[0], "-test.run=^TestAcrossHosts$")
	child.Env = append(os.Environ(), "PAYSIP_NETNS_CHILD=1")
	child.Stdin = strings.NewReader(base64.StdEncoding.EncodeToString(offer) + "\n")
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var answer []byte
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ANSWER "); ok {
			answer, _ = base64.StdEncoding.DecodeString(v)
			break
		}
	}
	if !strings.Contains(string(answer), "10.231.7.2") {
		t.Fatalf("answer from the other host:\n%s", answer)
	}
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	conn, err := a.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.Send(ctx, []byte("ping across hosts"))
	m, err := conn.Recv(ctx)
	if err != nil || string(m) != "pong: ping across hosts" {
		t.Fatalf("%q %v", m, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.ReceivedPackets() < 25 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if a.ReceivedPackets() < 25 {
		t.Fatalf("%d audio packets echoed back across hosts", a.ReceivedPackets())
	}
}

// netnsChild answers in the namespace: echo audio, "pong" messages.
func netnsChild() {
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	offer, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line))
	_, subnet, _ := net.ParseCIDR("10.231.7.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	b, answer, err := Answer(ctx, Config{Networks: []*net.IPNet{subnet}, Audio: AudioEcho}, offer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "answer:", err)
		return
	}
	defer b.Close()
	fmt.Println("ANSWER " + base64.StdEncoding.EncodeToString(answer))
	conn, err := b.Conn(ctx)
	if err != nil {
		return
	}
	for {
		m, err := conn.Recv(ctx)
		if err != nil {
			return
		}
		conn.Send(ctx, append([]byte("pong: "), m...))
	}
}

// hosts is a network namespace joined to the test's by a veth pair:
// 10.231.7.1 on hostIf here, 10.231.7.2 on nsIf there.
type hosts struct {
	ip, tc       string
	ns           string
	hostIf, nsIf string
}

var hostsSeq int

// newHosts makes the namespace and the link, removed at the end of the
// test; it skips without root or iproute2.
func newHosts(t *testing.T) *hosts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
			t.Fatal("ip (iproute2) is required")
		}
		t.Skip("ip not installed (apt-get install iproute2)")
	}
	hostsSeq++
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, hostsSeq)
	h := &hosts{ip: ipBin, ns: "paysip" + id, hostIf: "psh" + id, nsIf: "psn" + id}
	h.tc, _ = exec.LookPath("tc")
	if err := h.run("netns", "add", h.ns); err != nil {
		t.Skipf("cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() { h.run("link", "del", h.hostIf); h.run("netns", "del", h.ns) })
	for _, args := range [][]string{
		{"link", "add", h.hostIf, "type", "veth", "peer", "name", h.nsIf},
		{"link", "set", h.nsIf, "netns", h.ns},
		{"addr", "add", "10.231.7.1/24", "dev", h.hostIf},
		{"link", "set", h.hostIf, "up"},
		{"-n", h.ns, "addr", "add", "10.231.7.2/24", "dev", h.nsIf},
		{"-n", h.ns, "link", "set", h.nsIf, "up"},
		{"-n", h.ns, "link", "set", "lo", "up"},
	} {
		if err := h.run(args...); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *hosts) run(args ...string) error {
	out, err := exec.Command(h.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// netem applies tc netem arguments to both ends of the link.
func (h *hosts) netem(t *testing.T, args ...string) {
	t.Helper()
	if h.tc == "" {
		if os.Getenv("PAYSIP_REQUIRE_INTEROP") == "1" {
			t.Fatal("tc (iproute2) is required")
		}
		t.Skip("tc not installed (apt-get install iproute2)")
	}
	for _, cmd := range [][]string{
		append([]string{"qdisc", "add", "dev", h.hostIf, "root", "netem"}, args...),
		append([]string{"-n", h.ns, "qdisc", "add", "dev", h.nsIf, "root", "netem"}, args...),
	} {
		if out, err := exec.Command(h.tc, cmd...).CombinedOutput(); err != nil {
			if strings.Contains(string(out), "qdisc kind is unknown") {
				// The kernel's, not a package: nothing to install.
				t.Skipf("this kernel has no netem qdisc (sch_netem): %s", strings.TrimSpace(string(out)))
			}
			t.Fatalf("tc %s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
}

// netnsBridge answers in the namespace and relays the DataChannel to its
// parent over stdio ("MSG <base64>" lines both ways): the payee agent runs
// in the parent (next to the regtest node), its transport crosses the
// link between the two hosts. Stdin's end closes the peer.
func netnsBridge() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	if !in.Scan() {
		return
	}
	offer, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(in.Text()))
	_, subnet, _ := net.ParseCIDR("10.231.7.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, answer, err := Answer(ctx, Config{Networks: []*net.IPNet{subnet}}, offer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "answer:", err)
		return
	}
	defer b.Close()
	var mu sync.Mutex
	say := func(s string) { mu.Lock(); fmt.Println(s); mu.Unlock() }
	say("ANSWER " + base64.StdEncoding.EncodeToString(answer))
	conn, err := b.Conn(ctx)
	if err != nil {
		return
	}
	go func() {
		for {
			m, err := conn.Recv(ctx)
			if err != nil {
				say("CLOSED")
				return
			}
			say("MSG " + base64.StdEncoding.EncodeToString(m))
		}
	}()
	for in.Scan() {
		if v, ok := strings.CutPrefix(in.Text(), "MSG "); ok {
			m, _ := base64.StdEncoding.DecodeString(v)
			conn.Send(ctx, m)
		}
	}
}

// bridgeConn is the parent's side of netnsBridge, as an agent.Conn.
type bridgeConn struct {
	mu     sync.Mutex
	stdin  io.WriteCloser
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func (c *bridgeConn) Send(ctx context.Context, m []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return agent.ErrConnClosed
	default:
	}
	if _, err := fmt.Fprintf(c.stdin, "MSG %s\n", base64.StdEncoding.EncodeToString(m)); err != nil {
		return fmt.Errorf("%w: %v", agent.ErrConnClosed, err)
	}
	return nil
}

func (c *bridgeConn) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m, ok := <-c.in:
		if !ok {
			return nil, agent.ErrConnClosed
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *bridgeConn) Close() error {
	c.once.Do(func() { close(c.closed); c.stdin.Close() })
	return nil
}

// paidCallAcrossHosts sets up a paid call whose DataChannel crosses the
// veth link: the payer's peer here, the answering peer in the namespace
// (bridged to the payee agent here). It returns both ends.
func paidCallAcrossHosts(t *testing.T, ctx context.Context, h *hosts) (payerEnd, payeeEnd agent.Conn) {
	t.Helper()
	_, subnet, _ := net.ParseCIDR("10.231.7.0/24")
	a, offer, err := NewOffer(ctx, Config{Networks: []*net.IPNet{subnet}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	child := exec.CommandContext(ctx, h.ip, "netns", "exec", h.ns, os.Args[0], "-test.run=^TestAcrossHosts$")
	child.Env = append(os.Environ(), "PAYSIP_NETNS_CHILD=bridge")
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); child.Process.Kill(); child.Wait() })
	fmt.Fprintln(stdin, base64.StdEncoding.EncodeToString(offer))
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var answer []byte
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ANSWER "); ok {
			answer, _ = base64.StdEncoding.DecodeString(v)
			break
		}
	}
	if !strings.Contains(string(answer), "10.231.7.2") {
		t.Fatalf("answer from the other host:\n%s", answer)
	}
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	bc := &bridgeConn{stdin: stdin, in: make(chan []byte, 64), closed: make(chan struct{})}
	go func() {
		defer close(bc.in)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MSG "); ok {
				m, _ := base64.StdEncoding.DecodeString(v)
				bc.in <- m
			}
		}
	}()
	conn, err := a.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return conn, bc
}

// acrossHostsWorld is a regtest node, a payer and a payee whose meter
// forgives 8 s of silence (so a short cut does not end the call).
func acrossHostsWorld(t *testing.T) (*faulttest.World, *atomic.Int64) {
	var stored atomic.Int64
	w := faulttest.New(t, faulttest.Options{Payee: func(p *agent.Payee) {
		p.Metering = &meter.Payee{PriceSatPerMin: faulttest.Price, Tick: faulttest.Tick, Grace: 8 * time.Second}
		p.OnPayment = func(string, int64) { stored.Add(1) }
	}})
	return w, &stored
}

// settledExactly checks the end of a call across hosts that the payer
// closed: everything it was acknowledged is what the payee stored, settled
// on chain to the satoshi.
func settledExactly(t *testing.T, ctx context.Context, w *faulttest.World, call *faulttest.Call, want int64) {
	t.Helper()
	if !call.Wait(90 * time.Second) {
		t.Fatal("the call did not end")
	}
	if call.Payer.Err != nil || !call.Payer.Closed || call.Payer.AckedSat != want {
		t.Fatalf("payer: %+v", call.Payer)
	}
	res := call.Payee.Result
	if res == nil || res.SettlementTxID == "" || res.PaidSat != want {
		t.Fatalf("payee: %+v %v", res, call.Payee.Err)
	}
	if best := w.PayeeDB.Record(t, res.ChannelID).BestSat; best != want {
		t.Fatalf("payee stored %d, acknowledged %d", best, want)
	}
	w.Node.Mine(1)
	w.Payer.Recover(ctx)
	pm, em := w.CheckPayer(t), w.CheckPayee(t)
	if pm.SettledSat != want || em.SettledSat != want {
		t.Fatalf("on chain %d/%d, want %d", pm.SettledSat, em.SettledSat, want)
	}
	t.Logf("on chain: %d sat settled, exactly what was acknowledged", want)
}

// TestAcrossHostsLinkCut: a paid call whose DataChannel crosses the veth
// link between two hosts; mid-call the link goes down (ip link set down)
// for 2 s and comes back. No payment gets through meanwhile; after it,
// payments resume (SCTP retransmits, ICE has not given up), the payer
// catches up on the meter, closes, and the payee settles exactly what it
// acknowledged, on a real regtest node.
func TestAcrossHostsLinkCut(t *testing.T) {
	start := time.Now()
	h := newHosts(t)
	w, stored := acrossHostsWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payerEnd, payeeEnd := paidCallAcrossHosts(t, ctx, h)
	call := w.StartCallOn(ctx, payerEnd, payeeEnd, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 150})
	if !faulttest.Eventually(20*time.Second, func() bool { return stored.Load() >= 10 }) {
		t.Fatalf("%d payments before the cut", stored.Load())
	}
	if err := h.run("link", "set", h.hostIf, "down"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // what was in flight lands or is lost
	before := stored.Load()
	time.Sleep(2 * time.Second)
	during := stored.Load() - before
	if err := h.run("link", "set", h.hostIf, "up"); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if during != 0 {
		t.Errorf("%d payments crossed a link that was down", during)
	}
	if !faulttest.Eventually(30*time.Second, func() bool { return stored.Load() > before }) {
		t.Fatal("no payment after the link came back")
	}
	t.Logf("%d payments before the cut, first after it %v after the link came back", before, time.Since(up).Round(time.Millisecond))
	settledExactly(t, ctx, w, call, 150*faulttest.Price/60)
	t.Logf("%d payments; %v", stored.Load(), time.Since(start).Round(time.Millisecond))
}

// TestAcrossHostsNetem: the same call, its DataChannel open, then tc
// netem's 10% packet loss and 40 ms ± 20 ms delay each way on the link:
// every payment arrives (SCTP is reliable), the call closes, and the
// settlement on chain is exactly what was acknowledged. It skips on a
// kernel without the netem qdisc.
func TestAcrossHostsNetem(t *testing.T) {
	start := time.Now()
	h := newHosts(t)
	w, stored := acrossHostsWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payerEnd, payeeEnd := paidCallAcrossHosts(t, ctx, h)
	h.netem(t, "delay", "40ms", "20ms", "loss", "10%")
	call := w.StartCallOn(ctx, payerEnd, payeeEnd, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 120})
	settledExactly(t, ctx, w, call, 120*faulttest.Price/60)
	t.Logf("%d payments over a lossy, slow link; %v", stored.Load(), time.Since(start).Round(time.Millisecond))
}

// TestAcrossHostsLinkLost: the link goes down mid-call and stays down.
// The payee, hearing nothing for longer than its grace, hangs up and
// settles the best payment it stored; the payer, its payment unanswered,
// ends when ICE gives the connection up (pion: about 30 s), with an error,
// not a hang. On chain: the payee's best exactly, no less than the payer
// saw acknowledged and no more than it signed.
func TestAcrossHostsLinkLost(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for ICE to fail (~30 s)")
	}
	start := time.Now()
	h := newHosts(t)
	var stored atomic.Int64
	w := faulttest.New(t, faulttest.Options{Payee: func(p *agent.Payee) {
		p.Metering = &meter.Payee{PriceSatPerMin: faulttest.Price, Tick: faulttest.Tick, Grace: time.Second}
		p.OnPayment = func(string, int64) { stored.Add(1) }
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payerEnd, payeeEnd := paidCallAcrossHosts(t, ctx, h)
	call := w.StartCallOn(ctx, payerEnd, payeeEnd, faulttest.HonestPayer{}, faulttest.HonestPayee{}, faulttest.Plan{Seconds: 150})
	if !faulttest.Eventually(20*time.Second, func() bool { return stored.Load() >= 10 }) {
		t.Fatalf("%d payments before the cut", stored.Load())
	}
	if err := h.run("link", "set", h.hostIf, "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if !call.Wait(80 * time.Second) {
		t.Fatal("a side still waits 80 s after the link was lost")
	}
	t.Logf("both sides ended %v after the cut; payer: %v; payee: %v", time.Since(cut).Round(time.Millisecond), call.Payer.Err, call.Payee.Err)
	if call.Payer.Err == nil || call.Payer.Closed {
		t.Errorf("payer: %+v", call.Payer)
	}
	if !errors.Is(call.Payee.Err, agent.ErrPaymentLate) || call.Payee.Result == nil || call.Payee.Result.SettlementTxID == "" {
		t.Fatalf("payee: %+v %v", call.Payee.Result, call.Payee.Err)
	}
	w.Node.Mine(1)
	w.Payer.Recover(ctx)
	pm, em := w.CheckPayer(t), w.CheckPayee(t)
	if pm.SettledSat != em.SettledSat || em.SettledSat != call.Payee.Result.PaidSat {
		t.Fatalf("on chain %d/%d, payee's best %d", pm.SettledSat, em.SettledSat, call.Payee.Result.PaidSat)
	}
	t.Logf("on chain: %d sat settled (payer acknowledged %d); %v", em.SettledSat, call.Payer.AckedSat, time.Since(start).Round(time.Millisecond))
}
