package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jessevdk/go-flags"
)

// app is the command line: the global options, which may come anywhere
// (before or after the command), and the commands, each in its own file.
//
// Every option comes from, in order of precedence: the command line,
// a PAYSIP_<OPTION> environment variable (dashes as underscores, upper
// case: --btcd-rpc is PAYSIP_BTCD_RPC), then "name = value" lines in
// <datadir>/paysip.conf (go-flags' INI format: options of one command may
// also go in a [command] section). Shell completion: go-flags completes
// when GO_FLAGS_COMPLETION is set (see README).
type app struct {
	Node   nodeFlags `group:"Node and wallet options"`
	SIP    sipFlags  `group:"SIP agent options (payee, call, demo)"`
	Domain string    `long:"domain" default:"paysip.local" description:"the SIP domain (serve; user: the accounts' domain, the digest realm)"`

	parser *flags.Parser
}

// commandSpec is one command for the parser.
type commandSpec struct {
	name, short, long string
	data              any
	// setup, if set, adjusts the command once added (subcommands...).
	setup func(*flags.Command) error
}

// commands builds the commands of a; every command file adds its own.
var commands []func(a *app) commandSpec

func newApp() (*app, error) {
	a := &app{}
	a.Node.Datadir = defaultDataDir()
	a.parser = flags.NewNamedParser("paysip", flags.HelpFlag|flags.PassDoubleDash)
	a.parser.ShortDescription = "calls to premium SIP addresses, paid per second in bitcoin"
	a.parser.LongDescription = "Run 'paysip COMMAND --help' for a command's options."
	if _, err := a.parser.AddGroup("Global options", "", a); err != nil {
		return nil, err
	}
	for _, mk := range commands {
		c := mk(a)
		cmd, err := a.parser.AddCommand(c.name, c.short, c.long, c.data)
		if err != nil {
			return nil, err
		}
		if c.setup != nil {
			if err := c.setup(cmd); err != nil {
				return nil, err
			}
		}
	}
	eachOption(a.parser.Command, func(o *flags.Option) {
		if o.LongName != "" && o.Field().Tag.Get("no-env") == "" {
			o.EnvDefaultKey = "PAYSIP_" + strings.ToUpper(strings.ReplaceAll(o.LongName, "-", "_"))
		}
	})
	return a, nil
}

// eachOption calls f for every option of c, its groups and subcommands.
func eachOption(c *flags.Command, f func(*flags.Option)) {
	var group func(g *flags.Group)
	group = func(g *flags.Group) {
		for _, o := range g.Options() {
			f(o)
		}
		for _, sub := range g.Groups() {
			group(sub)
		}
	}
	group(c.Group)
	for _, sub := range c.Commands() {
		eachOption(sub, f)
	}
}

// configPath is <datadir>/paysip.conf, the data directory taken from the
// command line or PAYSIP_DATADIR before the rest is parsed.
func configPath(args []string) string {
	var pre struct {
		Datadir string `long:"datadir" env:"PAYSIP_DATADIR"`
	}
	pre.Datadir = defaultDataDir()
	p := flags.NewParser(&pre, flags.IgnoreUnknown|flags.PassDoubleDash)
	p.CompletionHandler = func([]flags.Completion) {} // completion is the main parser's
	p.ParseArgs(args)
	return filepath.Join(pre.Datadir, "paysip.conf")
}

// parse reads the configuration and runs the command.
func (a *app) parse(args []string) error {
	path := configPath(args)
	switch err := flags.NewIniParser(a.parser).ParseFile(path); {
	case err == nil:
		// The environment comes before the file: set again what the
		// file set and the environment also has.
		eachOption(a.parser.Command, func(o *flags.Option) {
			if v, ok := os.LookupEnv(o.EnvDefaultKey); ok && o.EnvDefaultKey != "" {
				o.Set(&v)
			}
		})
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("%s: %w", path, err)
	}
	_, err := a.parser.ParseArgs(args)
	return err
}

// run is main's work: the exit status of args.
func run(args []string) int {
	a, err := newApp()
	if err != nil {
		fmt.Fprintln(os.Stderr, "paysip:", err)
		return 1
	}
	err = a.parse(args)
	var fe *flags.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &fe) && fe.Type == flags.ErrHelp:
		fmt.Fprintln(os.Stdout, fe.Message)
		return 0
	case errors.As(err, &fe) && fe.Type == flags.ErrCommandRequired:
		a.parser.WriteHelp(os.Stderr)
		return 2
	case errors.As(err, &fe):
		fmt.Fprintln(os.Stderr, "paysip:", err)
		fmt.Fprintln(os.Stderr, "Run 'paysip --help' (or 'paysip COMMAND --help') for the options.")
		return 2
	}
	name := "paysip"
	for c := a.parser.Active; c != nil; c = c.Active {
		name += " " + c.Name
	}
	fmt.Fprintln(os.Stderr, name+":", err)
	return 1
}
