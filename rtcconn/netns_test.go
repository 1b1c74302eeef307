package rtcconn

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAcrossHosts runs the answering peer in a network namespace of its
// own, joined to the test's by a veth pair (10.231.7.1 here, 10.231.7.2
// there: addresses that exist only on that pair): the DataChannel opens
// and audio flows between two hosts, not over loopback. It needs root and
// iproute2; elsewhere it skips.
func TestAcrossHosts(t *testing.T) {
	if os.Getenv("PAYSIP_NETNS_CHILD") != "" {
		netnsChild()
		return
	}
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
	ns := fmt.Sprintf("paysip%d", os.Getpid()%100000)
	hostIf, nsIf := "psh"+ns[6:], "psn"+ns[6:]
	run := func(args ...string) error {
		out, err := exec.Command(ipBin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", ns); err != nil {
		t.Skipf("cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() { run("link", "del", hostIf); run("netns", "del", ns) })
	for _, args := range [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", ns},
		{"addr", "add", "10.231.7.1/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", ns, "addr", "add", "10.231.7.2/24", "dev", nsIf},
		{"-n", ns, "link", "set", nsIf, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
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
