package btcnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
)

func miningAddr(t testing.TB) btcutil.Address {
	a, err := btcutil.NewAddressWitnessPubKeyHash(make([]byte, 20), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestVersionPinnedInGoMod(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod := string(b)
	tool := strings.Contains(mod, "tool github.com/btcsuite/btcd\n") || strings.Contains(mod, "\tgithub.com/btcsuite/btcd\n")
	if !tool || !strings.Contains(mod, "github.com/btcsuite/btcd "+Version) {
		t.Fatalf("go.mod does not pin btcd %s as a tool", Version)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestStartActivateRestartStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	n, err := StartRegtest(ctx, Config{DataDir: dir, MiningAddr: miningAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.client.GetBlockCount()
	if err != nil || h != ActivationHeight {
		t.Fatalf("height %d, %v", h, err)
	}
	if _, err := n.Generate(3); err != nil {
		t.Fatal(err)
	}
	// A block mined by someone else through RPC is saved by the sync loop.
	if _, err := n.client.Generate(1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	best, _ := n.client.GetBestBlockHash()
	pid := n.Pid()
	n.Stop()
	n.Stop() // twice is harmless
	if alive(pid) {
		t.Fatalf("btcd %d still running after Stop", pid)
	}
	// Same data directory: btcd wipes its regtest database, but the chain
	// comes back, same blocks, no re-mining.
	n, err = StartRegtest(ctx, Config{DataDir: dir, MiningAddr: miningAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	h, _ = n.client.GetBlockCount()
	again, _ := n.client.GetBestBlockHash()
	if h != ActivationHeight+4 || *again != *best {
		t.Fatalf("after restart: height %d best %v, want %d %v", h, again, ActivationHeight+4, best)
	}
}

// TestChainSurvivesKill: the node's owner is killed (SIGKILL) right after
// mining; the next start still has those blocks.
func TestChainSurvivesKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	n, err := StartRegtest(ctx, Config{DataDir: dir, MiningAddr: miningAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.Generate(2)
	best, _ := n.client.GetBestBlockHash()
	syscall.Kill(-n.Pid(), syscall.SIGKILL) // no graceful anything
	<-n.Exited()
	n2, err := StartRegtest(ctx, Config{DataDir: dir, MiningAddr: miningAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	again, _ := n2.client.GetBestBlockHash()
	if *again != *best {
		t.Fatalf("best block %v after kill and restart, want %v", again, best)
	}
	n.Stop()
}

// TestNodeDiesWithParent starts a node from a child process, kills the
// child with SIGKILL, and checks that btcd goes too.
func TestNodeDiesWithParent(t *testing.T) {
	t.Parallel()
	if os.Getenv("PAYSIP_BTCNODE_CHILD") != "" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestChildNode", "-test.v")
	cmd.Env = append(os.Environ(), "PAYSIP_BTCNODE_CHILD="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	buf := make([]byte, 4096)
	var seen string
	deadline := time.Now().Add(90 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		k, err := out.Read(buf)
		seen += string(buf[:k])
		if i := strings.Index(seen, "BTCD_PID="); i >= 0 {
			rest := seen[i+len("BTCD_PID="):]
			if j := strings.IndexByte(rest, '\n'); j >= 0 {
				pid, _ = strconv.Atoi(rest[:j])
			}
		}
		if err != nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("child never reported a btcd pid: %s", seen)
	}
	if !alive(pid) {
		t.Fatal("btcd not running while its parent is")
	}
	cmd.Process.Kill()
	cmd.Wait()
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("btcd %d survived its parent's SIGKILL", pid)
	}
}

// TestChildNode is the child of TestNodeDiesWithParent.
func TestChildNode(t *testing.T) {
	dir := os.Getenv("PAYSIP_BTCNODE_CHILD")
	if dir == "" {
		t.Skip("helper process for TestNodeDiesWithParent")
	}
	n, err := StartRegtest(context.Background(), Config{DataDir: dir, MiningAddr: miningAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BTCD_PID=%d\n", n.Pid())
	time.Sleep(time.Minute)
}

// TestBlockInterval: a node started with a block interval mines on its
// own; stopping the miner (or the node) stops the blocks.
func TestBlockInterval(t *testing.T) {
	t.Parallel()
	n, err := StartRegtest(context.Background(), Config{DataDir: t.TempDir(), MiningAddr: miningAddr(t), BlockInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := n.client.GetBlockCount()
		if err != nil {
			t.Fatal(err)
		}
		if h >= ActivationHeight+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("height %d after 10 s of a 200 ms block interval", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.miningMu.Lock()
	for _, stop := range n.mining {
		stop()
	}
	n.miningMu.Unlock()
	time.Sleep(300 * time.Millisecond)
	h1, _ := n.client.GetBlockCount()
	time.Sleep(600 * time.Millisecond)
	if h2, _ := n.client.GetBlockCount(); h2 != h1 {
		t.Fatalf("mined %d -> %d after the miner stopped", h1, h2)
	}
}
