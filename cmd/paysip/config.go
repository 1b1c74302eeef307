package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/paysip/paysip/btcnode"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/txbuild"
	"github.com/paysip/paysip/wallet"
)

// nodeFlags are the options every command that touches the chain shares
// (global: they may come anywhere on the command line).
type nodeFlags struct {
	Datadir          string        `long:"datadir" no-ini:"true" description:"data directory (wallet, channels, embedded node, paysip.conf)"`
	Network          string        `long:"network" default:"regtest" choice:"mainnet" choice:"testnet" choice:"signet" choice:"regtest" description:"the Bitcoin network"`
	RPC              string        `long:"btcd-rpc" description:"host:port of an external btcd (with --txindex --addrindex); empty runs an embedded regtest btcd"`
	RPCUser          string        `long:"btcd-user" description:"external btcd RPC user"`
	RPCPass          string        `long:"btcd-pass" description:"external btcd RPC password"`
	RPCCert          string        `long:"btcd-cert" description:"external btcd RPC TLS certificate (empty: plain HTTP, loopback only)"`
	WalletPassphrase string        `long:"wallet-passphrase" description:"wallet encryption passphrase (better PAYSIP_WALLET_PASSPHRASE)"`
	WalletName       string        `long:"wallet" description:"name of the wallet (and channel store) in the data directory, for several agents on one machine"`
	DB               string        `long:"db" value-name:"PATH|URL" description:"the store: a SQLite file, or postgres://... shared by several serve nodes or payee members (default: paysip.db in the data directory)"`
	Verbose          bool          `short:"v" long:"verbose" description:"log at debug level"`
	BlockInterval    time.Duration `long:"block-interval" default:"5s" description:"the embedded regtest node mines a block this often (0: never on its own)"`
	FallbackFee      int64         `long:"fallback-fee" value-name:"SAT_PER_VB" description:"fee rate when the node has no estimate (0: refuse, except on regtest: 2)"`
}

func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".paysip"
	}
	return filepath.Join(home, ".paysip")
}

func (n *nodeFlags) logger() *slog.Logger {
	level := slog.LevelInfo
	if n.Verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// netDir is the data directory of the selected network.
func (n *nodeFlags) netDir() string { return filepath.Join(n.Datadir, n.Network) }

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
	if n.WalletName == "" {
		return filepath.Join(n.netDir(), "wallet.json")
	}
	return filepath.Join(n.netDir(), "wallet-"+n.WalletName+".json")
}

func (n *nodeFlags) storePath() string {
	if n.DB != "" {
		return n.DB
	}
	if n.WalletName == "" {
		return filepath.Join(n.netDir(), "paysip.db")
	}
	return filepath.Join(n.netDir(), "paysip-"+n.WalletName+".db")
}

// rpcInfo is what a running embedded btcd leaves for other commands.
type rpcInfo struct {
	Host, User, Pass string
	Pid              int
}

// serverStorePath is the store of serve and user: --db, or paysip.db.
func (n *nodeFlags) serverStorePath() string {
	if n.DB != "" {
		return n.DB
	}
	return filepath.Join(n.netDir(), "paysip.db")
}

func (n *nodeFlags) rpcInfoPath() string { return filepath.Join(n.netDir(), "btcd", "rpc.json") }

// openChain connects to the configured node: an external btcd, the
// embedded one another paysip process runs, or a new embedded one.
func (n *nodeFlags) openChain(ctx context.Context, log *slog.Logger) (*node, error) {
	params, err := chain.ParamsByName(n.Network)
	if err != nil {
		return nil, err
	}
	nd := &node{flags: n, log: log}
	if err := os.MkdirAll(n.netDir(), 0o700); err != nil {
		return nil, err
	}
	if n.RPC != "" {
		nd.chain, err = btcdrpc.New(btcdrpc.Config{Host: n.RPC, User: n.RPCUser, Pass: n.RPCPass, CertFile: n.RPCCert, Params: params,
			FallbackFee: txbuild.FeeRate(n.FallbackFee * 1000), Log: log})
		if err != nil {
			return nil, err
		}
		if _, err := nd.chain.TipHeight(ctx); err != nil {
			return nil, fmt.Errorf("external btcd at %s: %w", n.RPC, err)
		}
		return nd, nil
	}
	if !chain.IsRegtest(params) {
		return nil, fmt.Errorf("the embedded node runs regtest only; for %s give --btcd-rpc", n.Network)
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
	nd.btcd, err = btcnode.StartRegtest(ctx, btcnode.Config{DataDir: filepath.Join(n.netDir(), "btcd"), MiningAddr: mining, Log: log, BlockInterval: n.BlockInterval})
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
	pass := n.WalletPassphrase
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
