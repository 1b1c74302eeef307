package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "node", short: "run the embedded regtest btcd in the foreground, for other paysip commands to share",
			long: "Mines a block every --block-interval (0: never on its own).", data: &nodeCmd{a: a}}
	})
}

// nodeCmd is 'paysip node'.
type nodeCmd struct{ a *app }

// Execute runs the node until Ctrl-C.
func (c *nodeCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	nf := &c.a.Node
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nd, err := nf.openChain(ctx, nf.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	if nd.btcd == nil {
		return fmt.Errorf("a node is already running for %s (or --btcd-rpc is set)", nf.netDir())
	}
	tip, _ := nd.chain.TipHeight(ctx)
	fmt.Printf("btcd regtest running: rpc %s user %s (password in %s), height %d. Ctrl-C stops it.\n",
		nd.btcd.RPCAddr, nd.btcd.RPCUser, nf.rpcInfoPath(), tip)
	select {
	case <-ctx.Done():
	case <-nd.btcd.Exited():
		return fmt.Errorf("btcd exited")
	}
	return nil
}
