package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jessevdk/go-flags"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/web"
)

func init() {
	commands = append(commands, func(a *app) commandSpec {
		return commandSpec{name: "serve", short: "the SIP server: registrar, proxy, WebSocket, directory, SIP API to Bitcoin (and a regtest btcd unless --btcd-rpc)",
			long: "Serves --domain (the same setting 'paysip user' uses for its accounts: put 'domain = example.org' in paysip.conf).",
			data: &serveCmd{a: a, limitOpts: defaultLimitOpts()}}
	}, func(a *app) commandSpec {
		return commandSpec{name: "user", short: "SIP accounts of --domain: add, passwd, remove, list",
			long: "Accounts are per (name, domain); the domain is --domain, the same setting 'paysip serve' serves. Passwords come from PAYSIP_USER_PASSWORD or stdin; only digest HA1 values are stored.",
			data: &struct{}{},
			setup: func(c *flags.Command) error {
				for _, sub := range []struct {
					name, short string
					data        any
				}{
					{"add", "create an account", &userCmd{a: a, action: "add"}},
					{"passwd", "set an account's password", &userCmd{a: a, action: "passwd"}},
					{"remove", "remove an account", &userCmd{a: a, action: "remove"}},
					{"list", "every account, with its domain", &userListCmd{a: a}},
				} {
					if _, err := c.AddCommand(sub.name, sub.short, "", sub.data); err != nil {
						return err
					}
				}
				return nil
			}}
	})
}

// serveCmd is 'paysip serve'.
type serveCmd struct {
	a          *app
	SIPAddr    string `long:"sip-addr" default:"127.0.0.1:5060" description:"UDP and TCP listen address"`
	HTTPAddr   string `long:"http-addr" default:"127.0.0.1:8080" description:"HTTP listen address: SIP over WebSocket at /sip, directory at /api/directory"`
	TLSCert    string `long:"tls-cert" description:"certificate (PEM) for SIP over TLS and HTTPS/WSS"`
	TLSKey     string `long:"tls-key" description:"key (PEM) of --tls-cert"`
	TLSAddr    string `long:"tls-addr" default:"127.0.0.1:5061" description:"SIP over TLS listen address (with --tls-cert)"`
	Open       bool   `long:"open" description:"no authentication at all (local development only)"`
	NoAnon     bool   `long:"no-anonymous-calls" description:"refuse calls from callers without an account"`
	Faucet     bool   `long:"faucet" description:"regtest only: answer the SIP API's faucet requests from the embedded node's faucet wallet (the web app's faucet button)"`
	DigestAlgs string `long:"digest-algorithms" default:"MD5" description:"digest algorithms offered, in order (MD5, SHA-256); SHA-256 confuses many deployed clients"`
	// TrustedEdges: see sipserver.Config.TrustedEdges.
	TrustedEdges []string `long:"trusted-edge" value-name:"IP|CIDR" description:"an edge proxy (e.g. Kamailio) whose Path header the registrar accepts; repeat or separate with commas; a Path from anywhere else is refused"`
	NoMetrics    bool     `long:"no-metrics" description:"do not serve Prometheus metrics at GET /metrics on the HTTP server"`
	GCPercent    int      `long:"gc-percent" default:"400" description:"Go garbage collector target (GOGC), unless the GOGC environment variable is set: the SIP stack allocates per message, and the default 100 spends ~15% of the CPU collecting (docs/performance.md)"`
	CPUProfile   string   `long:"cpu-profile" hidden:"true" value-name:"FILE" description:"write a CPU profile of the server to FILE until it stops (go run ./interop/perf -profile)"`
	GCSoftLimit  int      `long:"gc-soft-limit" value-name:"MiB" description:"heap size above which the collector works as hard as it must to stay there, whatever --gc-percent says (GOMEMLIMIT, unless that variable is set; default 64 MiB + 4 KiB per --max-transactions; -1: none): --gc-percent saves CPU, never memory under attack"`
	// The digest nonce secret: every node of a domain needs the same
	// (default: kept in the store, shared by the nodes that share it).
	NonceSecret     string `long:"nonce-secret" env:"PAYSIP_NONCE_SECRET" description:"digest nonce HMAC secret, hex or base64, at least 32 bytes (better PAYSIP_NONCE_SECRET or --nonce-secret-file; default: made once and kept in the store)"`
	NonceSecretFile string `long:"nonce-secret-file" description:"file holding the digest nonce secret (mode 600)"`
	limitOpts
}

// limitOpts are the server's resource and rate limits (sipserver.Limits);
// their defaults are sipserver.DefaultLimits (defaultLimitOpts).
type limitOpts struct {
	MaxConns          int           `long:"max-conns" description:"TCP, TLS and HTTP/WebSocket connections held at once (at most half the file descriptor limit)"`
	MaxConnsPerIP     int           `long:"max-conns-per-ip" description:"connections held from one source address (0: no cap)"`
	IdleTimeout       time.Duration `long:"idle-timeout" description:"close a SIP connection (TCP, TLS, WebSocket) idle this long; a registration keeps its connection until it expires"`
	MaxMessageSize    int           `long:"max-message-size" description:"largest SIP message on any transport, bytes"`
	RequestRate       float64       `long:"request-rate" description:"requests per second from one source address before 503 + Retry-After (0: no limit)"`
	RequestBurst      int           `long:"request-burst" description:"requests one source address may send at once"`
	InputRate         int           `long:"input-rate" description:"bytes per second read from one source address: datagrams over it are dropped, streams slowed (0: no limit)"`
	MaxTransactions   int           `long:"max-transactions" description:"SIP server transactions alive at once; over it new requests are dropped or answered 503"`
	UDPReplyFactor    int           `long:"udp-reply-factor" description:"a UDP source that has not proved its address (by digest) gets at most this many times the bytes it sent (no reflection; 0: no bound; -1, the default: 2, or no bound with --open)"`
	APIRate           float64       `long:"api-rate" description:"SIP API to Bitcoin requests per second from one source address (burst twice that)"`
	MaxWatchesPerUser int           `long:"max-watches-per-user" description:"SIP API script watches per user"`
	MaxWatches        int           `long:"max-watches" description:"SIP API script watches in total"`
	MaxWatchExpires   int           `long:"max-watch-expires" description:"longest SIP API watch, seconds"`
	MaxBindings       int           `long:"max-bindings" description:"registrations (contact bindings) held in total; over it a REGISTER adding one is refused with 503 (0: the default, 100,000)"`
	LimitExempt       []string      `long:"limit-exempt" value-name:"CIDR" description:"networks exempt from per-source limits (an edge proxy in front), e.g. 10.0.0.5/32; repeat or separate with commas"`
}

func defaultLimitOpts() limitOpts {
	d := sipserver.DefaultLimits
	return limitOpts{MaxConns: d.MaxConns, MaxConnsPerIP: d.MaxConnsPerIP, IdleTimeout: d.IdleTimeout, MaxMessageSize: d.MaxMessageSize,
		RequestRate: d.RequestRate, RequestBurst: d.RequestBurst, InputRate: d.InputRate, MaxTransactions: d.MaxTransactions,
		UDPReplyFactor: -1, APIRate: 10, MaxWatchesPerUser: d.MaxWatchesPerUser, MaxWatches: d.MaxWatches, MaxWatchExpires: d.MaxWatchExpires}
}

// limits checks the options and renders them as the server's Limits and
// its SIP API rate.
func (o limitOpts) limits() (sipserver.Limits, float64, error) {
	off := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	l := sipserver.Limits{MaxConns: o.MaxConns, MaxConnsPerIP: off(o.MaxConnsPerIP), IdleTimeout: o.IdleTimeout, MaxMessageSize: o.MaxMessageSize,
		RequestRate: o.RequestRate, RequestBurst: o.RequestBurst, InputRate: off(o.InputRate), MaxWatchesPerUser: o.MaxWatchesPerUser,
		MaxWatches: o.MaxWatches, MaxWatchExpires: o.MaxWatchExpires, MaxTransactions: o.MaxTransactions}
	if o.RequestRate == 0 {
		l.RequestRate = -1
	}
	if o.UDPReplyFactor >= 0 { // unset (-1): the server decides (no bound with --open)
		l.UDPReplyFactor = off(o.UDPReplyFactor)
	}
	if o.MaxBindings < 0 {
		return sipserver.Limits{}, 0, fmt.Errorf("--max-bindings must not be negative")
	}
	if o.MaxConns <= 0 || o.MaxTransactions <= 0 || o.MaxMessageSize <= 0 || o.IdleTimeout <= 0 || o.APIRate <= 0 || o.MaxWatchesPerUser <= 0 || o.MaxWatches <= 0 || o.MaxWatchExpires <= 0 {
		return l, 0, fmt.Errorf("--max-conns, --max-transactions, --max-message-size, --idle-timeout, --api-rate and the watch limits must be positive")
	}
	for _, p := range splitEdges(o.LimitExempt) {
		if !strings.Contains(p, "/") {
			p += map[bool]string{true: "/128", false: "/32"}[strings.Contains(p, ":")]
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return l, 0, fmt.Errorf("--limit-exempt: %w", err)
		}
		l.Exempt = append(l.Exempt, pfx.Masked())
	}
	return l, o.APIRate, nil
}

// Execute serves until Ctrl-C.
func (c *serveCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	nf := &c.a.Node
	limits, apiRate, err := c.limits()
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" && c.GCPercent > 0 {
		debug.SetGCPercent(c.GCPercent)
	}
	if soft := int64(c.GCSoftLimit) << 20; os.Getenv("GOMEMLIMIT") == "" && soft >= 0 {
		if soft == 0 {
			soft = 64<<20 + int64(limits.MaxTransactions)<<12
		}
		debug.SetMemoryLimit(soft)
	}
	if c.CPUProfile != "" {
		stopProfile, err := startCPUProfile(c.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
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
	db, err := store.Open(nf.serverStorePath())
	if err != nil {
		return err
	}
	defer db.Close()
	secret, err := nonceSecret(ctx, c.NonceSecret, c.NonceSecretFile, db)
	if err != nil {
		return err
	}
	users, err := db.Users(ctx, c.a.Domain)
	if err != nil {
		return err
	}
	if c.Open {
		log.Warn("serving with --open: no authentication at all", "domain", c.a.Domain)
	} else {
		log.Info("SIP accounts", "domain", c.a.Domain, "accounts", len(users))
		if len(users) == 0 {
			log.Warn("no SIP account for this domain: add one with 'paysip user add NAME --domain "+c.a.Domain+"'", "domain", c.a.Domain)
		}
	}
	webApp, err := web.NewHandler(webConfig(c.a))
	if err != nil {
		return err
	}
	srv, err := sipserver.New(sipserver.Config{HTTPHandler: webApp, Domain: c.a.Domain, SIPAddr: c.SIPAddr, HTTPAddr: c.HTTPAddr,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSAddr: c.TLSAddr, Open: c.Open, NoAnonymousInbound: c.NoAnon, DigestAlgorithms: strings.Split(c.DigestAlgs, ","),
		TrustedEdges: splitEdges(c.TrustedEdges), Accounts: db, Chain: nd.chain, Log: log, Limits: limits, APIRate: apiRate, Secret: secret,
		Metrics: !c.NoMetrics, MaxBindings: c.MaxBindings})
	if err != nil {
		return err
	}
	stopPersist, err := persistBindings(ctx, srv.Registry(), db, log)
	if err != nil {
		return err
	}
	defer stopPersist()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		if c.Faucet {
			if err := enableFaucet(srv, nd); err != nil {
				return err
			}
		}
		tip, _ := nd.chain.TipHeight(ctx)
		fmt.Printf("paysip serving %s: SIP udp+tcp %s, ws http://127.0.0.1:%d/sip, directory http://127.0.0.1:%d/api/directory; %s at height %d\n",
			c.a.Domain, c.SIPAddr, srv.HTTPPort(), srv.HTTPPort(), nf.Network, tip)
		fmt.Printf("web app: http://127.0.0.1:%d/\n", srv.HTTPPort())
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

// userCmd is 'paysip user add|passwd|remove NAME'.
type userCmd struct {
	a      *app
	action string
	Args   struct {
		Name string `positional-arg-name:"NAME"`
	} `positional-args:"yes" required:"yes"`
}

func (c *userCmd) accounts() (*store.DB, error) {
	nf := &c.a.Node
	if err := os.MkdirAll(nf.netDir(), 0o700); err != nil {
		return nil, err
	}
	return store.Open(nf.serverStorePath())
}

// Execute adds, changes or removes the account.
func (c *userCmd) Execute(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	db, err := c.accounts()
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	name, domain := c.Args.Name, c.a.Domain
	switch c.action {
	case "add":
		if err := db.AddUser(ctx, name, domain, password()); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s added\n", name, domain)
	case "passwd":
		if err := db.SetPassword(ctx, name, domain, password()); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s: new password set\n", name, domain)
	case "remove":
		if err := db.RemoveUser(ctx, name, domain); err != nil {
			return err
		}
		fmt.Printf("sip:%s@%s removed\n", name, domain)
	}
	return nil
}

// password is PAYSIP_USER_PASSWORD, or a line read from stdin.
func password() string {
	if pass := os.Getenv("PAYSIP_USER_PASSWORD"); pass != "" {
		return pass
	}
	fmt.Fprint(os.Stderr, "password: ")
	var line string
	fmt.Scanln(&line)
	return line
}

// userListCmd is 'paysip user list'.
type userListCmd struct{ a *app }

// Execute lists every account.
func (c *userListCmd) Execute(args []string) error {
	db, err := (&userCmd{a: c.a}).accounts()
	if err != nil {
		return err
	}
	defer db.Close()
	users, err := db.Users(context.Background(), "")
	if err != nil {
		return err
	}
	for _, u := range users {
		fmt.Printf("sip:%s@%s\n", u.Name, u.Realm)
	}
	return nil
}

// splitEdges flattens --trusted-edge values given repeatedly or with commas.
func splitEdges(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// webConfig is what the web app's page learns from serve: the domain, the
// network, and the STUN/TURN servers of --stun/--turn (with --turn-user
// and --turn-pass: the page hands them to its RTCPeerConnection, so every
// visitor can read them; use TURN credentials meant for it).
func webConfig(a *app) web.Config {
	cfg := web.Config{Domain: a.Domain, Network: a.Node.Network, WebSocketPath: "/sip"}
	if s := a.SIP.STUN; s != "" {
		cfg.ICEServers = append(cfg.ICEServers, web.ICEServer{URLs: []string{s}})
	}
	if s := a.SIP.TURN; s != "" {
		cfg.ICEServers = append(cfg.ICEServers, web.ICEServer{URLs: []string{s}, Username: a.SIP.TURNUser, Credential: a.SIP.TURNPass})
	}
	return cfg
}
