package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/jessevdk/go-flags"
	"github.com/paysip/paysip/wallet"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "wallet", short: "the on-chain wallet: address, balance, send, mnemonic, restore", data: &struct{}{},
			setup: func(c *flags.Command) error {
				for _, sub := range []struct {
					name, short string
					data        any
				}{
					{"address", "a new receive address", &walletCmd{a: a, action: "address"}},
					{"balance", "confirmed and unconfirmed balance (JSON)", &walletCmd{a: a, action: "balance"}},
					{"mnemonic", "show the 24 words that restore the wallet", &walletCmd{a: a, action: "mnemonic"}},
					{"send", "pay an address (fee from the node's estimate)", &walletSendCmd{a: a}},
					{"restore", "restore a wallet from its mnemonic (no wallet may exist yet)", &walletRestoreCmd{a: a}},
				} {
					if _, err := c.AddCommand(sub.name, sub.short, "", sub.data); err != nil {
						return err
					}
				}
				return nil
			}}
	})
}

// walletCmd is 'paysip wallet address|balance|mnemonic'.
type walletCmd struct {
	a      *app
	action string
}

// Execute runs the action.
func (c *walletCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	ctx := context.Background()
	nd, err := c.a.Node.open(ctx, c.a.Node.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	w := nd.wallet
	switch c.action {
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
	}
	return nil
}

// walletSendCmd is 'paysip wallet send ADDRESS AMOUNT_SAT'.
type walletSendCmd struct {
	a    *app
	Args struct {
		Address string `positional-arg-name:"ADDRESS"`
		Amount  int64  `positional-arg-name:"AMOUNT_SAT"`
	} `positional-args:"yes" required:"yes"`
}

// Execute pays the address.
func (c *walletSendCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	ctx := context.Background()
	nd, err := c.a.Node.open(ctx, c.a.Node.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	w := nd.wallet
	addr, err := btcutil.DecodeAddress(c.Args.Address, w.Params())
	if err != nil {
		return err
	}
	rate, err := nd.chain.FeeRate(ctx, 6)
	if err != nil {
		return err
	}
	tx, err := w.Send(ctx, addr, c.Args.Amount, rate)
	if err != nil {
		return err
	}
	fmt.Println(tx.TxHash())
	return nil
}

// walletRestoreCmd is 'paysip wallet restore WORDS...'.
type walletRestoreCmd struct {
	a    *app
	Args struct {
		Words []string `positional-arg-name:"WORDS" required:"12"`
	} `positional-args:"yes" required:"yes"`
}

// Execute restores the wallet and shows its balance.
func (c *walletRestoreCmd) Execute(args []string) error {
	ctx := context.Background()
	nf := &c.a.Node
	nd, err := nf.openChain(ctx, nf.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	w, err := wallet.Restore(ctx, nf.walletPath(), nd.chain, joinWords(append(c.Args.Words, args...)), nf.WalletPassphrase, true)
	if err != nil {
		return err
	}
	b, err := w.Balance(ctx)
	if err != nil {
		return err
	}
	return printJSON(b)
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
