package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/sipserver"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "faucet", short: "regtest only: send coins to an address and mine a block to confirm them",
			long: "The embedded regtest node mines to a faucet wallet; this pays ADDRESS from it and mines one block. Refused on any network but regtest.",
			data: &faucetCmd{a: a}}
	})
}

// faucetCmd is 'paysip faucet ADDRESS AMOUNT_SAT'.
type faucetCmd struct {
	a    *app
	Args struct {
		Address string `positional-arg-name:"ADDRESS"`
		Amount  string `positional-arg-name:"AMOUNT_SAT"`
	} `positional-args:"yes"`
}

// Execute pays from the faucet.
func (c *faucetCmd) Execute(args []string) error {
	nf := &c.a.Node
	params, err := chain.ParamsByName(nf.Network)
	if err != nil {
		return err
	}
	if !chain.IsRegtest(params) {
		return fmt.Errorf("the faucet works on regtest only, not on %s: there, coins cost real work", nf.Network)
	}
	if c.Args.Amount == "" || len(args) > 0 {
		return fmt.Errorf("want ADDRESS AMOUNT_SAT")
	}
	addr, err := btcutil.DecodeAddress(c.Args.Address, params)
	if err != nil || !addr.IsForNet(params) {
		return fmt.Errorf("not a regtest address: %q", c.Args.Address)
	}
	amount, err := strconv.ParseInt(c.Args.Amount, 10, 64)
	if err != nil || amount <= 0 {
		return fmt.Errorf("amount must be a positive number of satoshis")
	}
	ctx := context.Background()
	nd, err := nf.openChain(ctx, nf.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	if nd.faucet == nil {
		return fmt.Errorf("the faucet needs the embedded regtest node (no --btcd-rpc)")
	}
	txid, err := faucet(ctx, nd, addr, amount)
	if err != nil {
		return err
	}
	fmt.Println(txid)
	return nil
}

// faucet pays amount to addr from the faucet wallet and mines a block.
func faucet(ctx context.Context, nd *node, addr btcutil.Address, amount int64) (string, error) {
	rate, err := nd.chain.FeeRate(ctx, 6)
	if err != nil {
		return "", err
	}
	tx, err := nd.faucet.Send(ctx, addr, amount, rate)
	if err != nil {
		return "", fmt.Errorf("faucet: %w", err)
	}
	if err := nd.chain.Generate(ctx, 1); err != nil {
		return "", err
	}
	return tx.TxHash().String(), nil
}

// nodeFaucet is the SIP API's faucet (serve --faucet): the embedded
// regtest node's faucet wallet, a block mined to confirm each payment.
type nodeFaucet struct {
	nd *node
	mu sync.Mutex // one faucet payment at a time: coins are selected once
}

// Pay implements sipserver.Faucet.
func (f *nodeFaucet) Pay(ctx context.Context, script []byte, amount int64) (string, error) {
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(script, f.nd.chain.Params())
	if err != nil || len(addrs) != 1 {
		return "", fmt.Errorf("faucet: script %x has no address", script)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return faucet(ctx, f.nd, addrs[0], amount)
}

// enableFaucet gives serve's SIP API the faucet: regtest with the
// embedded node only.
func enableFaucet(srv *sipserver.Server, nd *node) error {
	if !chain.IsRegtest(nd.chain.Params()) {
		return fmt.Errorf("--faucet works on regtest only, not on %s", nd.chain.Params().Name)
	}
	if nd.faucet == nil {
		return fmt.Errorf("--faucet needs the embedded regtest node (no --btcd-rpc)")
	}
	return srv.EnableFaucet(&nodeFaucet{nd: nd}, 0)
}
