package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/paysip/paysip/sipserver"
)

func init() {
	register(command{"directory", "list the priced endpoints a paysip server knows", runDirectory})
}

func runDirectory(args []string) error {
	fs := flag.NewFlagSet("directory", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the paysip server's HTTP address")
	asJSON := fs.Bool("json", false, "print the JSON as served")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(*server + "/api/directory")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("%s: %s", *server, res.Status)
	}
	var dir struct {
		Domain    string              `json:"domain"`
		Directory string              `json:"directory"`
		Entries   []sipserver.Listing `json:"entries"`
	}
	if err := json.NewDecoder(res.Body).Decode(&dir); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if *asJSON {
		return printJSON(dir)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "ADDRESS\tNAME\tSAT/MIN\tEXPIRES IN\n")
	for _, e := range dir.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%ds\n", e.AOR, e.Name, e.PriceSatPerMin, e.ExpiresIn)
	}
	return tw.Flush()
}
