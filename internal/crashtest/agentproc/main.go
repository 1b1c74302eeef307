// Command agentproc runs a paysip payer or payee node over TCP, for the
// crash tests: a real process, with its own wallet file and store, that
// PAYSIP_FAILPOINT can kill at any step of the protocol and that is then
// started again from its data directory.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain/btcdrpc"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
)

const price = 60_000

func main() {
	role := flag.String("role", "", "payer or payee")
	dir := flag.String("dir", "", "data directory (wallet.json, paysip.db)")
	dbURL := flag.String("db", "", "store: a postgres:// URL (default: paysip.db in -dir)")
	rpc := flag.String("rpc", "", "btcd host:port")
	user := flag.String("user", "", "btcd user")
	pass := flag.String("pass", "", "btcd password")
	addrFile := flag.String("addr-file", "", "payee: where to write its address; payer: where to read it")
	seconds := flag.Int64("seconds", 6, "payer: seconds of call to pay on the channel")
	recoverOnly := flag.Bool("recover-only", false, "run recovery (settle or refund what is due) and exit")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("proc", *role)
	if err := run(log, *role, *dir, *dbURL, *rpc, *user, *pass, *addrFile, *seconds, *recoverOnly); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, role, dir, dbURL, rpc, user, pass, addrFile string, seconds int64, recoverOnly bool) error {
	ctx := context.Background()
	c, err := btcdrpc.New(btcdrpc.Config{Host: rpc, User: user, Pass: pass, Params: &chaincfg.RegressionNetParams})
	if err != nil {
		return err
	}
	w, err := wallet.Open(filepath.Join(dir, "wallet.json"), c, "")
	if err != nil {
		return err
	}
	if dbURL == "" {
		dbURL = filepath.Join(dir, "paysip.db")
	}
	db, err := store.Open(dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	switch role {
	case "payee":
		p := &agent.Payee{Wallet: w, Chain: c, Store: db, Log: log, PriceSatPerMin: price, Poll: 20 * time.Millisecond, FeeHeadroom: 1,
			MinExpiryBlocks: 10, MaxExpiryBlocks: 20, KeepOpen: true, SettleMargin: 3}
		if err := p.Recover(ctx); err != nil {
			return err
		}
		if recoverOnly {
			return nil
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		tmp := addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, addrFile); err != nil {
			return err
		}
		for {
			conn, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() {
				res, err := p.Serve(ctx, agent.NewStreamConn(conn), "payer")
				log.Info("session over", "result", res, "err", err)
			}()
		}
	case "payer":
		p := &agent.Payer{Wallet: w, Chain: c, Store: db, Log: log, CapacitySat: 500_000, MaxPriceSatPerMin: 60_000, ResumeMargin: 4}
		if err := p.Recover(ctx); err != nil {
			return err
		}
		if recoverOnly {
			recs, err := db.List(ctx, store.StateOpen, store.StateRefundOnly)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if _, err := p.Refund(ctx, r.ID()); err != nil {
					var notYet *agent.ErrRefundNotYet
					if !errors.As(err, &notYet) {
						return err
					}
				}
			}
			return nil
		}
		return pay(ctx, log, p, db, addrFile, seconds)
	}
	return fmt.Errorf("unknown role %q", role)
}

// pay resumes the open channel with the payee, or opens one, and pays for
// the call's seconds on it, then closes.
func pay(ctx context.Context, log *slog.Logger, p *agent.Payer, db *store.DB, addrFile string, seconds int64) error {
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := os.ReadFile(addrFile)
		if err != nil {
			return err
		}
		nc, err := net.Dial("tcp", string(addr))
		if err != nil {
			return err
		}
		conn := agent.NewStreamConn(nc)
		var s *agent.PayerSession
		open, err := db.List(ctx, store.StateOpen)
		if err != nil {
			return err
		}
		if len(open) > 0 {
			log.Info("resuming", "channel", open[0].ID())
			s, err = p.Resume(ctx, conn, open[0].ID())
			if errors.Is(err, agent.ErrResumeRefused) {
				conn.Close()
				continue // left to its refund; open a new one
			}
		} else {
			s, err = p.Open(ctx, conn, "payee")
		}
		if err != nil {
			return err
		}
		// Seconds already paid on this channel, then the rest.
		from := s.PaidSat()*60/price + 1
		for sec := from; sec <= seconds; sec++ {
			owed, err := channel.Owed(price, sec)
			if err != nil {
				return err
			}
			if err := s.Pay(ctx, owed); err != nil {
				return err
			}
		}
		closed, err := s.Close(ctx, "done")
		if err != nil {
			return err
		}
		json.NewEncoder(os.Stdout).Encode(closed)
		return nil
	}
	return errors.New("no channel after 3 attempts")
}
