// Command plotbench draws docs/performance.md's figures from a bench run:
//
//	go run ./cmd/paysip bench --json > bench.json
//	go run ./internal/plot/plotbench -bench bench.json -out docs/img
//
// and, when interop/perf's JSON is given with -sip, the SIP server's
// figures (sip-register.png, sip-proxy.png).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/paysip/paysip/internal/bench"
	"github.com/paysip/paysip/internal/plot"
)

func main() {
	benchPath := flag.String("bench", "", "JSON of 'paysip bench --json'")
	sipPath := flag.String("sip", "", "JSON of the SIP server's load runs (interop/perf), optional")
	out := flag.String("out", "docs/img", "directory of the PNG files")
	flag.Parse()
	if *benchPath == "" && *sipPath == "" {
		fmt.Fprintln(os.Stderr, "plotbench: give -bench FILE and/or -sip FILE")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	if *benchPath != "" {
		var r bench.Result
		if err := readJSON(*benchPath, &r); err != nil {
			fail(err)
		}
		if err := plot.All(&r, *out); err != nil {
			fail(err)
		}
	}
	if *sipPath != "" {
		var s plot.SIPRuns
		if err := readJSON(*sipPath, &s); err != nil {
			fail(err)
		}
		if err := plot.SIP(&s, *out); err != nil {
			fail(err)
		}
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "plotbench:", err)
	os.Exit(1)
}
