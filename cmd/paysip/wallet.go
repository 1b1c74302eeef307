package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/paysip/paysip/wallet"
)

func init() {
	register(command{"wallet", "the on-chain wallet: address, balance, send, mnemonic, restore", runWallet})
}

const walletUsage = `usage: paysip wallet [flags] <action> [args]

actions:
  address                     a new receive address
  balance                     confirmed and unconfirmed balance (JSON)
  send ADDRESS AMOUNT_SAT     pay an address (fee from the node's estimate)
  mnemonic                    show the 24 words that restore the wallet
  restore WORDS...            restore a wallet from its mnemonic (no wallet may exist yet)

flags:`

func runWallet(args []string) error {
	fs := flag.NewFlagSet("wallet", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, walletUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return fmt.Errorf("no action")
	}
	ctx := context.Background()
	log := nf.logger()
	if rest[0] == "restore" {
		nd, err := nf.openChain(ctx, log)
		if err != nil {
			return err
		}
		defer nd.close()
		w, err := wallet.Restore(ctx, nf.walletPath(), nd.chain, joinWords(rest[1:]), nf.walletPassphrase, true)
		if err != nil {
			return err
		}
		b, err := w.Balance(ctx)
		if err != nil {
			return err
		}
		return printJSON(b)
	}
	nd, err := nf.open(ctx, log)
	if err != nil {
		return err
	}
	defer nd.close()
	w := nd.wallet
	switch rest[0] {
	case "address":
		a, err := w.NewAddress()
		if err != nil {
			return err
		}
		fmt.Println(a.EncodeAddress())
	case "balance":
		b, err := w.Balance(ctx)
		if err != nil {
			return err
		}
		return printJSON(b)
	case "mnemonic":
		fmt.Println(w.Mnemonic())
	case "send":
		if len(rest) != 3 {
			return fmt.Errorf("usage: paysip wallet send ADDRESS AMOUNT_SAT")
		}
		addr, err := btcutil.DecodeAddress(rest[1], w.Params())
		if err != nil {
			return err
		}
		amount, err := strconv.ParseInt(rest[2], 10, 64)
		if err != nil {
			return fmt.Errorf("amount: %w", err)
		}
		rate, err := nd.chain.FeeRate(ctx, 6)
		if err != nil {
			return err
		}
		tx, err := w.Send(ctx, addr, amount, rate)
		if err != nil {
			return err
		}
		fmt.Println(tx.TxHash())
	default:
		fs.Usage()
		return fmt.Errorf("unknown action %q", rest[0])
	}
	return nil
}

func joinWords(ws []string) string {
	s := ""
	for i, w := range ws {
		if i > 0 {
			s += " "
		}
		s += w
	}
	return s
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
