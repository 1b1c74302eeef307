package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/jessevdk/go-flags"
	"github.com/paysip/paysip/store"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "db", short: "the store: move it from SQLite to PostgreSQL",
			long: "A store is an SQLite file (the default: paysip.db in the data directory) or a PostgreSQL database (--db postgres://...).",
			data: &struct{}{},
			setup: func(c *flags.Command) error {
				_, err := c.AddCommand("migrate", "copy every channel, account, binding and shared secret of one store into another, checked row by row",
					"Copies --from into --to in one transaction on the target, then reads both back and compares them row by row and "+
						"column by column before committing: any difference and nothing is written. Stop the nodes using the source first. "+
						"A target that already has rows is refused unless --merge: then missing rows are added and the rows present must be "+
						"equal (a differing row is refused, never overwritten), so the command can be run again safely. Both stores are "+
						"brought to the current schema when opened.", &dbMigrateCmd{})
				return err
			}}
	})
}

// dbMigrateCmd is 'paysip db migrate'.
type dbMigrateCmd struct {
	From  string `long:"from" required:"yes" description:"the store to copy: sqlite:PATH (or a path) or postgres://..."`
	To    string `long:"to" required:"yes" description:"the store to fill: postgres://USER@HOST/DB (or sqlite:PATH)"`
	Merge bool   `long:"merge" description:"add to a target that already has rows (rows present must be equal)"`
}

// Execute copies the store.
func (c *dbMigrateCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	if c.From == c.To {
		return errors.New("--from and --to name the same store")
	}
	if !store.IsPostgres(c.From) {
		// A path that does not exist would be created empty: refuse.
		path := strings.TrimPrefix(c.From, "sqlite:")
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}
	ctx := context.Background()
	from, err := store.Open(c.From)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer from.Close()
	to, err := store.Open(c.To)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer to.Close()
	rep, err := store.Copy(ctx, from, to, store.CopyOptions{Merge: c.Merge})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "TABLE\tSOURCE ROWS\tCOPIED\tALREADY THERE\n")
	for _, t := range rep.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", t.Name, t.Source, t.Copied, t.Unchanged)
	}
	tw.Flush()
	fmt.Printf("checked: the %s store holds every row of the %s store, equal column by column\n", to.Backend(), from.Backend())
	return nil
}
