package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/paysip/paysip/chain"
)

func init() {
	register(command{"faucet", "regtest only: send coins to an address and mine a block to confirm them", runFaucet})
}

func runFaucet(args []string) error {
	fs := flag.NewFlagSet("faucet", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: paysip faucet [flags] ADDRESS AMOUNT_SAT\n\nThe embedded regtest node mines to a faucet wallet; this pays ADDRESS from it and\nmines one block. Refused on any network but regtest.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	params, err := chain.ParamsByName(nf.network)
	if err != nil {
		return err
	}
	if !chain.IsRegtest(params) {
		return fmt.Errorf("the faucet works on regtest only, not on %s: there, coins cost real work", nf.network)
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("want ADDRESS AMOUNT_SAT")
	}
	addr, err := btcutil.DecodeAddress(fs.Arg(0), params)
	if err != nil || !addr.IsForNet(params) {
		return fmt.Errorf("not a regtest address: %q", fs.Arg(0))
	}
	amount, err := strconv.ParseInt(fs.Arg(1), 10, 64)
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
