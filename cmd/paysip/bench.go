package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/paysip/paysip/internal/bench"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "bench", short: "measure the payee: verification ceiling, throughput, round trip, concurrent calls, demo start",
			long: "Starts its own regtest btcd, SIP server and payee process in a temporary directory, measures (issue 13's targets 3 to 5 and the demo's first paid second), prints a table (or --json) and cleans up. Every figure of one run comes from the same machine state: compare ratios, not absolute figures, on a shared machine. See docs/performance.md.",
			data: &benchCmd{a: a}}
	})
}

// benchCmd is 'paysip bench'.
type benchCmd struct {
	a          *app
	Channels   int           `long:"channels" default:"1000" description:"concurrent channels of the payee throughput phase"`
	Calls      int           `long:"calls" default:"1000" description:"concurrent WebRTC calls of the last step (steps of 10, 25, 50, 100, 250, 500 calls below it)"`
	Duration   time.Duration `long:"duration" default:"10s" description:"each measurement window"`
	NoDemo     bool          `long:"no-demo" description:"skip the demo's start time"`
	AsJSON     bool          `long:"json" description:"print one JSON object instead of the table"`
	ProfileDir string        `long:"profile" value-name:"DIR" description:"write CPU profiles (payee-throughput.pprof) to DIR"`
}

// Execute runs the bench.
func (c *benchCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if c.a.Node.Verbose {
		level = slog.LevelInfo
	}
	var progress io.Writer = os.Stderr
	quietSIPGo()
	res, err := bench.Run(ctx, bench.Config{Channels: c.Channels, Calls: c.Calls, Duration: c.Duration, Tick: c.a.SIP.Tick, NoDemo: c.NoDemo,
		ProfileDir: c.ProfileDir, Progress: progress, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		return err
	}
	if c.AsJSON {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	return bench.WriteTable(os.Stdout, res)
}
