package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/jessevdk/go-flags"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/store"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		list := &channelsListCmd{a: a}
		return commandSpec{name: "channels", short: "list channels; settle (payee) or refund (payer) one by hand",
			long: "Without a subcommand, lists every channel: role, state, capacity, paid, expiry, funding and closing txids.",
			data: list,
			setup: func(c *flags.Command) error {
				c.SubcommandsOptional = true
				if _, err := c.AddCommand("list", "every channel (the default)", "", list); err != nil {
					return err
				}
				if _, err := c.AddCommand("settle", "payee: broadcast the settlement of the best payment now", "", &channelsCloseCmd{a: a, settle: true}); err != nil {
					return err
				}
				_, err := c.AddCommand("refund", "payer: broadcast the refund (refused before its lock time, with the height to wait for)", "", &channelsCloseCmd{a: a})
				return err
			}}
	})
}

// channelsListCmd is 'paysip channels [list]'.
type channelsListCmd struct {
	a      *app
	AsJSON bool `long:"json" description:"list as JSON"`
}

// Execute lists the channels.
func (c *channelsListCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown action %q (list, settle ID, refund ID)", args[0])
	}
	ctx := context.Background()
	nd, err := c.a.Node.open(ctx, c.a.Node.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	recs, err := nd.store.List(ctx)
	if err != nil {
		return err
	}
	return listChannels(recs, c.AsJSON)
}

// channelsCloseCmd is 'paysip channels settle|refund ID'.
type channelsCloseCmd struct {
	a      *app
	settle bool
	Args   struct {
		ID string `positional-arg-name:"ID"`
	} `positional-args:"yes" required:"yes"`
}

// Execute settles or refunds the channel.
func (c *channelsCloseCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	ctx := context.Background()
	nd, err := c.a.Node.open(ctx, c.a.Node.logger())
	if err != nil {
		return err
	}
	defer nd.close()
	var txid string
	if c.settle {
		p := &agent.Payee{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: nd.log}
		txid, err = p.Settle(ctx, c.Args.ID)
	} else {
		p := &agent.Payer{Wallet: nd.wallet, Chain: nd.chain, Store: nd.store, Log: nd.log}
		txid, err = p.Refund(ctx, c.Args.ID)
	}
	if err != nil {
		return err
	}
	fmt.Println(txid)
	return nil
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
