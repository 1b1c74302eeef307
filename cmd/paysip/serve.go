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
	register(command{"user", "SIP accounts of the domain: user add NAME, user passwd NAME (password from PAYSIP_USER_PASSWORD or stdin), user remove NAME, user list", runUser})
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
	users, err := db.Users(ctx, *domain)
	if err != nil {
		return err
	}
	if *open {
		log.Warn("serving with --open: no authentication at all", "domain", *domain)
	} else {
		log.Info("SIP accounts", "domain", *domain, "accounts", len(users))
		if len(users) == 0 {
			log.Warn("no SIP account for this domain: add one with 'paysip user add NAME --domain "+*domain+"'", "domain", *domain)
		}
	}
	srv, err := sipserver.New(sipserver.Config{Domain: *domain, SIPAddr: *sipAddr, HTTPAddr: *httpAddr,
		TLSCert: *tlsCert, TLSKey: *tlsKey, TLSAddr: *tlsAddr, Open: *open, NoAnonymousInbound: *noAnon, DigestAlgorithms: strings.Split(*digestAlgs, ","),
		Accounts: db, Chain: nd.chain, Log: log})
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
	password := func() string {
		if pass := os.Getenv("PAYSIP_USER_PASSWORD"); pass != "" {
			return pass
		}
		fmt.Fprint(os.Stderr, "password: ")
		var line string
		fmt.Scanln(&line)
		return line
	}
	switch {
	case fs.NArg() == 2 && fs.Arg(0) == "add":
		if err := db.AddUser(ctx, fs.Arg(1), *domain, password()); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s added\n", fs.Arg(1), *domain)
		return nil
	case fs.NArg() == 2 && fs.Arg(0) == "passwd":
		if err := db.SetPassword(ctx, fs.Arg(1), *domain, password()); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s: new password set\n", fs.Arg(1), *domain)
		return nil
	case fs.NArg() == 2 && fs.Arg(0) == "remove":
		if err := db.RemoveUser(ctx, fs.Arg(1), *domain); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s removed\n", fs.Arg(1), *domain)
		return nil
	case fs.NArg() == 1 && fs.Arg(0) == "list":
		users, err := db.Users(ctx, "")
		if err != nil {
			return err
		}
		for _, u := range users {
			fmt.Printf("sip:%s@%s\n", u.Name, u.Realm)
		}
		return nil
	}
	return fmt.Errorf("usage: paysip user [flags] add NAME | passwd NAME | remove NAME | list")
}
