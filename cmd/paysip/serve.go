package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
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
	digestAlgs := fs.String("digest-algorithms", "MD5", "digest algorithms offered, in order (MD5, SHA-256); SHA-256 confuses many deployed clients")
	lim := limitFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	limits, apiRate, err := lim()
	if err != nil {
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
		Accounts: db, Chain: nd.chain, Log: log, Limits: limits, APIRate: apiRate})
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

// limitFlags registers the flags of the server's limits (see
// docs/security-limits.md); the function returned reads them once parsed.
func limitFlags(fs *flag.FlagSet) func() (sipserver.Limits, float64, error) {
	d := sipserver.DefaultLimits
	maxConns := fs.Int("max-conns", d.MaxConns, "TCP, TLS and HTTP/WebSocket connections held at once (at most half the file descriptor limit)")
	perIP := fs.Int("max-conns-per-ip", d.MaxConnsPerIP, "connections held from one source address (0: no cap)")
	idle := fs.Duration("idle-timeout", d.IdleTimeout, "close a SIP connection (TCP, TLS, WebSocket) idle this long; a registration keeps its connection until it expires")
	msgSize := fs.Int("max-message-size", d.MaxMessageSize, "largest SIP message on any transport, bytes")
	reqRate := fs.Float64("request-rate", d.RequestRate, "requests per second from one source address before 503 + Retry-After (0: no limit)")
	reqBurst := fs.Int("request-burst", d.RequestBurst, "requests one source address may send at once")
	inRate := fs.Int("input-rate", d.InputRate, "bytes per second read from one source address: datagrams over it are dropped, streams slowed (0: no limit)")
	maxTx := fs.Int("max-transactions", d.MaxTransactions, "SIP server transactions alive at once; over it new requests are dropped or answered 503")
	replyFactor := fs.Int("udp-reply-factor", d.UDPReplyFactor, "a UDP source that has not proved its address (by digest) gets at most this many times the bytes it sent (no reflection; 0: no bound, the default with --open)")
	apiRate := fs.Float64("api-rate", 10, "SIP API to Bitcoin requests per second from one source address (burst twice that)")
	watchesUser := fs.Int("max-watches-per-user", d.MaxWatchesPerUser, "SIP API script watches per user")
	watches := fs.Int("max-watches", d.MaxWatches, "SIP API script watches in total")
	watchExp := fs.Int("max-watch-expires", d.MaxWatchExpires, "longest SIP API watch, seconds")
	exempt := fs.String("limit-exempt", "", "comma-separated networks exempt from per-source limits (an edge proxy in front), e.g. 10.0.0.5/32")
	off := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	return func() (sipserver.Limits, float64, error) {
		l := sipserver.Limits{MaxConns: *maxConns, MaxConnsPerIP: off(*perIP), IdleTimeout: *idle, MaxMessageSize: *msgSize,
			RequestRate: *reqRate, RequestBurst: *reqBurst, InputRate: off(*inRate), MaxWatchesPerUser: *watchesUser,
			MaxWatches: *watches, MaxWatchExpires: *watchExp, MaxTransactions: *maxTx}
		if *reqRate == 0 {
			l.RequestRate = -1
		}
		// Unset, the server decides (no bound with --open: see
		// sipserver.New).
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "udp-reply-factor" {
				l.UDPReplyFactor = off(*replyFactor)
			}
		})
		if *maxConns <= 0 || *maxTx <= 0 || *msgSize <= 0 || *idle <= 0 || *apiRate <= 0 || *watchesUser <= 0 || *watches <= 0 || *watchExp <= 0 {
			return l, 0, fmt.Errorf("--max-conns, --max-transactions, --max-message-size, --idle-timeout, --api-rate and the watch limits must be positive")
		}
		for _, p := range strings.Split(*exempt, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if !strings.Contains(p, "/") {
				p += map[bool]string{true: "/128", false: "/32"}[strings.Contains(p, ":")]
			}
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return l, 0, fmt.Errorf("--limit-exempt: %w", err)
			}
			l.Exempt = append(l.Exempt, pfx.Masked())
		}
		return l, *apiRate, nil
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
