// Package btcnode runs a btcd Bitcoin node for paysip: on regtest by
// default, started by paysip itself on random free loopback ports, with its
// own data directory and generated RPC credentials, and stopped with it.
//
// The btcd executable is the one pinned in go.mod as a Go tool dependency
// (go get -tool github.com/btcsuite/btcd@v0.24.2): Binary finds it with
// `go tool -n btcd` when run from the source tree, or installs exactly that
// version into the user's cache directory otherwise. PAYSIP_BTCD overrides
// both with a path.
//
// The node dies with its parent: it runs in its own process group with a
// parent-death signal (SIGKILL), so even a paysip killed with SIGKILL
// leaves no btcd behind.
package btcnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
)

// Version is the btcd release paysip runs; go.mod's tool line pins the same
// (a test checks they agree).
const Version = "v0.24.2"

// ActivationHeight is the regtest height at which segwit and CSV are active
// on btcd (BIP9 deployments, windows of 144 blocks).
const ActivationHeight = 500

// Config says how to run a node.
type Config struct {
	// DataDir holds the node's chain, logs and credentials.
	DataDir string
	// Binary is the btcd executable; empty means Binary().
	Binary string
	// MiningAddr receives the coinbase of blocks mined with Generate
	// (btcd's generate RPC requires one). Regtest only.
	MiningAddr btcutil.Address
	// Log receives the node's lifecycle events; nil discards them.
	Log *slog.Logger
	// BlockInterval, when positive, mines a block that often while the
	// node runs, as a real network would: unconfirmed transactions (a
	// funding's change, a settlement) confirm without anyone asking. 0
	// mines only on request (tests that need a still chain).
	BlockInterval time.Duration
}

// Node is a running btcd.
type Node struct {
	Params  *chaincfg.Params
	RPCAddr string // host:port of the JSON-RPC server (plain HTTP, loopback)
	RPCUser string
	RPCPass string
	P2PAddr string

	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
	log      *slog.Logger
	client   *rpcclient.Client
	chain    *chainLog
	stopSync chan struct{}
	synced   chan struct{}
	miningMu sync.Mutex
	mining   []func()
}

// Binary returns the path of the pinned btcd executable, building it if
// needed (the first build takes about half a minute).
func Binary(ctx context.Context) (string, error) {
	if p := os.Getenv("PAYSIP_BTCD"); p != "" {
		return p, nil
	}
	if root := moduleRoot(); root != "" {
		cmd := exec.CommandContext(ctx, "go", "tool", "-n", "btcd")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
		return "", fmt.Errorf("building btcd with 'go tool -n btcd' in %s: %v: %s", root, err, stderr.String())
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "paysip", "btcd-"+Version)
	path := filepath.Join(bin, "btcd")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/btcsuite/btcd@"+Version)
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing btcd %s: %v: %s", Version, err, out)
	}
	return path, nil
}

// moduleRoot finds paysip's source tree above the working directory, or
// "" when not running from it.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/paysip/paysip\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// StartRegtest starts a regtest node, waits for its RPC server, and mines
// to ActivationHeight if the chain is shorter.
func StartRegtest(ctx context.Context, cfg Config) (*Node, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "btcd")
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(ctx); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o700); err != nil {
		return nil, err
	}
	clog, blocks, err := openChainLog(filepath.Join(cfg.DataDir, "chain.blocks"))
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port may be taken between picking and binding
		n, err := start(ctx, bin, cfg, log)
		if err != nil {
			lastErr = err
			continue
		}
		n.chain = clog
		if err := n.restore(blocks); err != nil {
			n.Stop()
			return nil, err
		}
		if err := n.activate(ctx, cfg.MiningAddr); err != nil {
			n.Stop()
			return nil, err
		}
		if err := n.sync(); err != nil {
			n.Stop()
			return nil, err
		}
		n.stopSync, n.synced = make(chan struct{}), make(chan struct{})
		go n.syncLoop()
		if cfg.BlockInterval > 0 {
			n.MineEvery(cfg.BlockInterval)
			log.Info("mining a block regularly", "interval", cfg.BlockInterval)
		}
		return n, nil
	}
	return nil, lastErr
}

// syncLoop keeps the chain log current with blocks mined by anyone (other
// paysip processes mine through RPC), until Stop.
func (n *Node) syncLoop() {
	defer close(n.synced)
	for {
		select {
		case <-n.stopSync:
			return
		case <-n.exited:
			return
		case <-time.After(500 * time.Millisecond):
			if err := n.sync(); err != nil {
				n.log.Warn("saving the regtest chain", "err", err)
			}
		}
	}
}

func start(ctx context.Context, bin string, cfg Config, log *slog.Logger) (*Node, error) {
	rpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	p2pPort, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &Node{
		Params:  &chaincfg.RegressionNetParams,
		RPCAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(rpcPort)),
		P2PAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p2pPort)),
		RPCUser: "paysip", RPCPass: randomHex(16),
		exited: make(chan struct{}), log: log,
	}
	args := []string{
		"--regtest", "--notls", "--txindex", "--addrindex", "--rejectnonstd", "--nodnsseed",
		"--rpcuser=" + n.RPCUser, "--rpcpass=" + n.RPCPass, "--rpclisten=" + n.RPCAddr,
		"--listen=" + n.P2PAddr, "--datadir=" + filepath.Join(cfg.DataDir, "data"),
		"--logdir=" + filepath.Join(cfg.DataDir, "logs"), "--debuglevel=info",
		// Every paysip process on the node (server, payees, payers) has
		// up to 4 requests in flight (chain/btcdrpc); btcd's default of 10
		// at once answers the rest 503 (they retry).
		"--rpcmaxclients=64",
	}
	if cfg.MiningAddr != nil {
		args = append(args, "--miningaddr="+cfg.MiningAddr.EncodeAddress())
	}
	out, err := os.OpenFile(filepath.Join(cfg.DataDir, "logs", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = out, out
	// Own process group (so Stop reaches it whole), and SIGKILL when
	// paysip dies, whatever kills it.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting btcd: %w", err)
	}
	go func() {
		n.waitErr = n.cmd.Wait()
		out.Close()
		close(n.exited)
	}()
	n.client, err = rpcclient.New(n.ConnConfig(), nil)
	if err != nil {
		n.Stop()
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := n.client.GetBlockCount(); err == nil {
			break
		}
		select {
		case <-n.exited:
			return nil, fmt.Errorf("btcd exited during start-up (%v); see %s", n.waitErr, filepath.Join(cfg.DataDir, "logs"))
		case <-ctx.Done():
			n.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.Stop()
			return nil, errors.New("btcd RPC did not come up within 60 s")
		}
	}
	log.Info("btcd started", "rpc", n.RPCAddr, "pid", n.cmd.Process.Pid, "datadir", cfg.DataDir)
	return n, nil
}

// activate mines to ActivationHeight so segwit and CSV rules apply.
func (n *Node) activate(ctx context.Context, miningAddr btcutil.Address) error {
	h, err := n.client.GetBlockCount()
	if err != nil {
		return err
	}
	if h >= ActivationHeight {
		return nil
	}
	if miningAddr == nil {
		return errors.New("regtest node below activation height and no mining address")
	}
	if _, err := n.Generate(ActivationHeight - uint32(h)); err != nil {
		return fmt.Errorf("mining to activation: %w", err)
	}
	info, err := n.client.GetBlockChainInfo()
	if err != nil {
		return err
	}
	for _, fork := range []string{"segwit", "csv"} {
		if f, ok := info.Bip9SoftForks[fork]; ok && f.Status != "active" {
			return fmt.Errorf("%s is %s at height %d", fork, f.Status, info.Blocks)
		}
	}
	n.log.Info("regtest activated", "height", info.Blocks)
	return nil
}

// ConnConfig returns the RPC client configuration for this node.
func (n *Node) ConnConfig() *rpcclient.ConnConfig {
	return &rpcclient.ConnConfig{Host: n.RPCAddr, User: n.RPCUser, Pass: n.RPCPass, HTTPPostMode: true, DisableTLS: true}
}

// Generate mines blocks paying the node's mining address, and saves them
// before returning.
func (n *Node) Generate(blocks uint32) ([]*chainhash.Hash, error) {
	hs, err := n.client.Generate(blocks)
	if err != nil {
		return nil, err
	}
	if n.chain != nil {
		if err := n.sync(); err != nil {
			return hs, fmt.Errorf("saving mined blocks: %w", err)
		}
	}
	return hs, nil
}

// MineEvery mines a block every interval until the node stops or the
// returned function is called (calling it again is harmless).
func (n *Node) MineEvery(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-n.exited:
				return
			case <-t.C:
				if _, err := n.Generate(1); err != nil {
					select {
					case <-done:
					case <-n.exited:
					default:
						n.log.Warn("mining a block", "err", err)
					}
				}
			}
		}
	}()
	stop = func() { once.Do(func() { close(done) }) }
	n.miningMu.Lock()
	n.mining = append(n.mining, stop)
	n.miningMu.Unlock()
	return stop
}

// Pid returns the node's process id.
func (n *Node) Pid() int { return n.cmd.Process.Pid }

// Exited is closed when the node process has exited.
func (n *Node) Exited() <-chan struct{} { return n.exited }

// Stop shuts the node down: SIGINT to its process group (btcd flushes and
// exits), SIGKILL after 15 seconds. Calling it again is harmless.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		n.miningMu.Lock()
		for _, stop := range n.mining {
			stop()
		}
		n.miningMu.Unlock()
		if n.stopSync != nil {
			close(n.stopSync)
			<-n.synced
			select {
			case <-n.exited: // nothing to ask a dead node
			default:
				if err := n.sync(); err != nil {
					n.log.Warn("saving the regtest chain", "err", err)
				}
			}
		}
		if n.client != nil {
			n.client.Shutdown()
		}
		pgid := n.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-n.exited
		}
		n.log.Info("btcd stopped")
	})
	return nil
}
