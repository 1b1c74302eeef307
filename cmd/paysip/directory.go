package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/paysip/paysip/sipua"
)

func init() {
	register(command{"directory", "list the priced endpoints a paysip server knows", runDirectory})
}

func runDirectory(args []string) error {
	fs := flag.NewFlagSet("directory", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the paysip server's HTTP address")
	asJSON := fs.Bool("json", false, "print the entries as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, err := sipua.FetchDirectory(ctx, *server)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(entries)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "ADDRESS\tNAME\tSAT/MIN\tEXPIRES IN\n")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%ds\n", e.AOR, e.Name, e.PriceSatPerMin, e.ExpiresIn)
	}
	return tw.Flush()
}
