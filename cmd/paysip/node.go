package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func init() {
	register(command{"node", "run the embedded regtest btcd in the foreground, for other paysip commands to share", runNode})
}

func runNode(args []string) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
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
