// Command paysip is the one binary of paysip: per-second payments for SIP
// calls through a Bitcoin payment channel. Each subcommand lives in its own
// file; cli.go reads the command line, the environment and paysip.conf.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
