package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/paysip/paysip/sipua"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "directory", short: "list the priced endpoints a paysip server knows", data: &directoryCmd{}}
	})
}

// directoryCmd is 'paysip directory'.
type directoryCmd struct {
	Server string `long:"server" default:"http://127.0.0.1:8080" description:"the paysip server's HTTP address"`
	AsJSON bool   `long:"json" description:"print the entries as JSON"`
}

// Execute lists the directory.
func (c *directoryCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, err := sipua.FetchDirectory(ctx, c.Server)
	if err != nil {
		return err
	}
	if c.AsJSON {
		return printJSON(entries)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "ADDRESS\tNAME\tSAT/MIN\tEXPIRES IN\n")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%ds\n", e.AOR, e.Name, e.PriceSatPerMin, e.ExpiresIn)
	}
	return tw.Flush()
}
