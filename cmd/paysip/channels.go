package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/store"
)

func init() {
	register(command{"channels", "list channels; settle (payee) or refund (payer) one by hand", runChannels})
}

const channelsUsage = `usage: paysip channels [flags] [list | settle ID | refund ID]

  list        every channel: role, state, capacity, paid, expiry, funding and closing txids
  settle ID   payee: broadcast the settlement of the best payment now
  refund ID   payer: broadcast the refund (refused before its lock time)

flags:`

func runChannels(args []string) error {
	fs := flag.NewFlagSet("channels", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "list as JSON")
	fs.Usage = func() { fmt.Fprintln(os.Stderr, channelsUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	action := "list"
	if fs.NArg() > 0 {
		action = fs.Arg(0)
	}
	ctx := context.Background()
	nd, err := nf.open(ctx, nf.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	switch action {
	case "list":
		recs, err := nd.store.List(ctx)
		if err != nil {
			return err
		}
		return listChannels(recs, *asJSON)
	case "settle", "refund":
		if fs.NArg() != 2 {
			fs.Usage()
			return fmt.Errorf("%s needs a channel id", action)
		}
		id := fs.Arg(1)
		var txid string
		if action == "settle" {
			p := &agent.Payee{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: nd.log}
			txid, err = p.Settle(ctx, id)
		} else {
			p := &agent.Payer{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: nd.log}
			txid, err = p.Refund(ctx, id)
		}
		if err != nil {
			return err
		}
		fmt.Println(txid)
		return nil
	}
	fs.Usage()
	return fmt.Errorf("unknown action %q", action)
}

type channelRow struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	State        string `json:"state"`
	Peer         string `json:"peer"`
	CapacitySat  int64  `json:"capacity_sat"`
	PaidSat      int64  `json:"paid_sat"`
	ExpiryHeight uint32 `json:"expiry_height"`
	FundingTxID  string `json:"funding_txid"`
	CloseTxID    string `json:"close_txid,omitempty"`
}

func listChannels(recs []*store.Record, asJSON bool) error {
	rows := make([]channelRow, 0, len(recs))
	for _, r := range recs {
		paid := r.BestSat
		if r.Role == store.Payer {
			paid = r.AckedSat
		}
		rows = append(rows, channelRow{ID: r.ID(), Role: string(r.Role), State: string(r.State), Peer: r.Peer,
			CapacitySat: r.Channel.CapacitySat, PaidSat: paid, ExpiryHeight: r.Channel.ExpiryHeight,
			FundingTxID: r.Channel.Outpoint.Hash.String(), CloseTxID: r.CloseTxID})
	}
	if asJSON {
		return printJSON(rows)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSTATE\tCAPACITY\tPAID\tEXPIRY\tCLOSE TXID\tPEER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.Role, r.State, r.CapacitySat, r.PaidSat, r.ExpiryHeight, r.CloseTxID, r.Peer)
	}
	return tw.Flush()
}
