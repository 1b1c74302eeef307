package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/store"
)

func init() {
	register(command{"serve", "the SIP server: registrar, proxy, WebSocket, directory, SIP API to Bitcoin (and a regtest btcd unless --btcd-rpc)", runServe})
	register(command{"user", "SIP accounts: user add NAME (password from PAYSIP_USER_PASSWORD or stdin), user list", runUser})
}

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	domain := fs.String("domain", "paysip.local", "the SIP domain served")
	sipAddr := fs.String("sip-addr", "127.0.0.1:5060", "UDP and TCP listen address")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "HTTP listen address: SIP over WebSocket at /sip, directory at /api/directory")
	tlsCert := fs.String("tls-cert", "", "certificate (PEM) for SIP over TLS and HTTPS/WSS")
	tlsKey := fs.String("tls-key", "", "key (PEM) of --tls-cert")
	tlsAddr := fs.String("tls-addr", "127.0.0.1:5061", "SIP over TLS listen address (with --tls-cert)")
	open := fs.Bool("open", false, "no authentication at all (local development only)")
	noAnon := fs.Bool("no-anonymous-calls", false, "refuse calls from callers without an account")
	trustedEdges := fs.String("trusted-edge", "", "comma-separated IPs or networks (CIDR) of edge proxies (e.g. Kamailio) whose Path header the registrar accepts; a Path from anywhere else is refused")
	digestAlgs := fs.String("digest-algorithms", "MD5", "digest algorithms offered, in order (MD5, SHA-256); SHA-256 confuses many deployed clients")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := nf.logger()
	quietSIPGo()
	nd, err := nf.openChain(ctx, log)
	if err != nil {
		return err
	}
	defer nd.close()
	db, err := store.Open(filepath.Join(nf.netDir(), "paysip.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	srv, err := sipserver.New(sipserver.Config{Domain: *domain, SIPAddr: *sipAddr, HTTPAddr: *httpAddr,
		TLSCert: *tlsCert, TLSKey: *tlsKey, TLSAddr: *tlsAddr, Open: *open, NoAnonymousInbound: *noAnon, DigestAlgorithms: strings.Split(*digestAlgs, ","),
		TrustedEdges: splitNonEmpty(*trustedEdges), Accounts: db, Chain: nd.chain, Log: log})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		tip, _ := nd.chain.TipHeight(ctx)
		fmt.Printf("paysip serving %s: SIP udp+tcp %s, ws http://127.0.0.1:%d/sip, directory http://127.0.0.1:%d/api/directory; %s at height %d\n",
			*domain, *sipAddr, srv.HTTPPort(), srv.HTTPPort(), nf.network, tip)
	case err := <-errc:
		return err
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		select {
		case err := <-errc:
			return err
		case <-time.After(5 * time.Second):
			return nil
		}
	}
}

func runUser(args []string) error {
	fs := flag.NewFlagSet("user", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	domain := fs.String("domain", "paysip.local", "the SIP domain (digest realm)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(nf.netDir(), 0o700); err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(nf.netDir(), "paysip.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	switch {
	case fs.NArg() == 2 && fs.Arg(0) == "add":
		pass := os.Getenv("PAYSIP_USER_PASSWORD")
		if pass == "" {
			fmt.Fprint(os.Stderr, "password: ")
			var line string
			fmt.Scanln(&line)
			pass = line
		}
		if err := db.AddUser(ctx, fs.Arg(1), *domain, pass); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s added\n", fs.Arg(1), *domain)
		return nil
	case fs.NArg() == 1 && fs.Arg(0) == "list":
		users, err := db.Users(ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			fmt.Println(u)
		}
		return nil
	}
	return fmt.Errorf("usage: paysip user [flags] add NAME | list")
}

// splitNonEmpty splits a comma-separated list, dropping empty items.
func splitNonEmpty(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
