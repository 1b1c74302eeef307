package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

// Configuration comes from, in order of precedence: command-line flags,
// PAYSIP_<FLAG> environment variables (dashes as underscores, upper case),
// and "name = value" lines in <datadir>/paysip.conf.

// nodeFlags are the flags every command that touches the chain shares.
type nodeFlags struct {
	datadir, network          string
	rpc, rpcUser, rpcPass     string
	rpcCert, walletPassphrase string
	walletName                string
	verbose                   bool
	blockInterval             time.Duration
}

func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".paysip"
	}
	return filepath.Join(home, ".paysip")
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.datadir, "datadir", defaultDataDir(), "data directory (wallet, channels, embedded node)")
	fs.StringVar(&n.network, "network", "regtest", "mainnet, testnet, signet or regtest")
	fs.StringVar(&n.rpc, "btcd-rpc", "", "host:port of an external btcd (with --txindex --addrindex); empty runs an embedded regtest btcd")
	fs.StringVar(&n.rpcUser, "btcd-user", "", "external btcd RPC user")
	fs.StringVar(&n.rpcPass, "btcd-pass", "", "external btcd RPC password")
	fs.StringVar(&n.rpcCert, "btcd-cert", "", "external btcd RPC TLS certificate (empty: plain HTTP)")
	fs.StringVar(&n.walletPassphrase, "wallet-passphrase", "", "wallet encryption passphrase (better set PAYSIP_WALLET_PASSPHRASE)")
	fs.StringVar(&n.walletName, "wallet", "", "name of the wallet (and channel store) in the data directory, for several agents on one machine")
	fs.BoolVar(&n.verbose, "v", false, "log at debug level")
	fs.DurationVar(&n.blockInterval, "block-interval", 5*time.Second, "the embedded regtest node mines a block this often (0: never on its own)")
}

// parseFlags parses args, then fills unset flags from the environment and
// the config file.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "PAYSIP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			fs.Set(f.Name, v)
			set[f.Name] = true
		}
	})
	dd := fs.Lookup("datadir")
	if dd == nil {
		return nil
	}
	f, err := os.Open(filepath.Join(dd.Value.String(), "paysip.conf"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, value, ok := strings.Cut(text, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || fs.Lookup(name) == nil {
			return fmt.Errorf("paysip.conf line %d: unknown setting %q", line, name)
		}
		if !set[name] {
			if err := fs.Set(name, value); err != nil {
				return fmt.Errorf("paysip.conf line %d: %v", line, err)
			}
		}
	}
	return sc.Err()
}

func (n *nodeFlags) logger() *slog.Logger {
	level := slog.LevelInfo
	if n.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// netDir is the data directory of the selected network.
func (n *nodeFlags) netDir() string { return filepath.Join(n.datadir, n.network) }

// node is what a command works with: the chain, the wallet, the store,
// and the embedded btcd when this process started it.
type node struct {
	flags    *nodeFlags
	log      *slog.Logger
	chain    *btcdrpc.Client
	btcd     *btcnode.Node
	faucet   *wallet.Wallet // embedded regtest only: receives mined coins
	wallet   *wallet.Wallet
	store    *store.DB
	mnemonic string // set when the wallet was just created
}

// walletPath and storePath are the wallet file and channel store of the
// selected wallet (--wallet).
func (n *nodeFlags) walletPath() string {
	if n.walletName == "" {
		return filepath.Join(n.netDir(), "wallet.json")
	}
	return filepath.Join(n.netDir(), "wallet-"+n.walletName+".json")
}

func (n *nodeFlags) storePath() string {
	if n.walletName == "" {
		return filepath.Join(n.netDir(), "paysip.db")
	}
	return filepath.Join(n.netDir(), "paysip-"+n.walletName+".db")
}

// rpcInfo is what a running embedded btcd leaves for other commands.
type rpcInfo struct {
	Host, User, Pass string
	Pid              int
}

func (n *nodeFlags) rpcInfoPath() string { return filepath.Join(n.netDir(), "btcd", "rpc.json") }

// openChain connects to the configured node: an external btcd, the
// embedded one another paysip process runs, or a new embedded one.
func (n *nodeFlags) openChain(ctx context.Context, log *slog.Logger) (*node, error) {
	params, err := chain.ParamsByName(n.network)
	if err != nil {
		return nil, err
	}
	nd := &node{flags: n, log: log}
	if err := os.MkdirAll(n.netDir(), 0o700); err != nil {
		return nil, err
	}
	if n.rpc != "" {
		nd.chain, err = btcdrpc.New(btcdrpc.Config{Host: n.rpc, User: n.rpcUser, Pass: n.rpcPass, CertFile: n.rpcCert, Params: params})
		if err != nil {
			return nil, err
		}
		if _, err := nd.chain.TipHeight(ctx); err != nil {
			return nil, fmt.Errorf("external btcd at %s: %w", n.rpc, err)
		}
		return nd, nil
	}
	if !chain.IsRegtest(params) {
		return nil, fmt.Errorf("the embedded node runs regtest only; for %s give --btcd-rpc", n.network)
	}
	faucetPath := filepath.Join(n.netDir(), "faucet.json")
	if nd.faucet, _, err = wallet.OpenOrCreate(faucetPath, chain.Offline{Net: params}, ""); err != nil {
		return nil, err
	}
	// Another paysip process may run the embedded node already.
	if b, err := os.ReadFile(n.rpcInfoPath()); err == nil {
		var info rpcInfo
		if json.Unmarshal(b, &info) == nil && syscall.Kill(info.Pid, 0) == nil {
			c, err := btcdrpc.New(btcdrpc.Config{Host: info.Host, User: info.User, Pass: info.Pass, Params: params})
			if err == nil {
				if _, err := c.TipHeight(ctx); err == nil {
					nd.chain = c
					nd.faucet, err = wallet.Open(faucetPath, c, "")
					return nd, err
				}
				c.Close()
			}
		}
	}
	mining, err := nd.faucet.NewAddress()
	if err != nil {
		return nil, err
	}
	log.Info("starting the embedded btcd (regtest); the first start builds it", "datadir", filepath.Join(n.netDir(), "btcd"))
	nd.btcd, err = btcnode.StartRegtest(ctx, btcnode.Config{DataDir: filepath.Join(n.netDir(), "btcd"), MiningAddr: mining, Log: log, BlockInterval: n.blockInterval})
	if err != nil {
		return nil, err
	}
	info, _ := json.Marshal(rpcInfo{Host: nd.btcd.RPCAddr, User: nd.btcd.RPCUser, Pass: nd.btcd.RPCPass, Pid: nd.btcd.Pid()})
	if err := os.WriteFile(n.rpcInfoPath(), info, 0o600); err != nil {
		nd.close()
		return nil, err
	}
	if nd.chain, err = btcdrpc.New(btcdrpc.Config{Host: nd.btcd.RPCAddr, User: nd.btcd.RPCUser, Pass: nd.btcd.RPCPass, Params: params}); err != nil {
		nd.close()
		return nil, err
	}
	if nd.faucet, err = wallet.Open(faucetPath, nd.chain, ""); err != nil {
		nd.close()
		return nil, err
	}
	return nd, nil
}

// open connects to the chain and opens (creating on first use) the wallet
// and the channel store.
func (n *nodeFlags) open(ctx context.Context, log *slog.Logger) (*node, error) {
	nd, err := n.openChain(ctx, log)
	if err != nil {
		return nil, err
	}
	pass := n.walletPassphrase
	if nd.wallet, nd.mnemonic, err = wallet.OpenOrCreate(n.walletPath(), nd.chain, pass); err != nil {
		nd.close()
		return nil, err
	}
	if nd.mnemonic != "" {
		log.Warn("created a new wallet; write down its mnemonic (paysip wallet mnemonic shows it again)", "file", n.walletPath())
	}
	if nd.store, err = store.Open(n.storePath()); err != nil {
		nd.close()
		return nil, err
	}
	return nd, nil
}

func (nd *node) close() {
	if nd.store != nil {
		nd.store.Close()
	}
	if nd.chain != nil {
		nd.chain.Close()
	}
	if nd.btcd != nil {
		nd.btcd.Stop()
		os.Remove(nd.flags.rpcInfoPath())
	}
}
