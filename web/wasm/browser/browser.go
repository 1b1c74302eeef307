// Package browser is the paysip a web page runs, compiled to WebAssembly
// by web/wasm: the wallet, a payer and a payee on the same Go packages as
// the CLI (wallet, agent, paidcall), reaching the chain only through the
// SIP API (chainapi.Client over the page's SIP.js), keeping keys and
// channels in the page's storage (IndexedDB). It knows nothing of
// JavaScript: web/wasm's main adapts it to the page's API (Contract A in
// web/wasm/API.md), and the tests drive it natively.
package browser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/chain"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/meter"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/wallet"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

// Config is what a page gives the app.
type Config struct {
	// Network is mainnet, testnet, signet or regtest.
	Network string
	// Domain is the SIP domain whose sip:bitcoin@ the page asks.
	Domain string
	// RoundTrip carries SIP API requests (chainapi.RoundTrip).
	RoundTrip chainapi.RoundTrip
	// Wallet keeps the wallet's (encrypted) state; Channels the
	// channels. Both must be durable when a write returns.
	Wallet   wallet.Storage
	Channels kvstore.KV
	Log      *slog.Logger
	// Poll is how often agents ask the chain while waiting (default 1 s).
	Poll time.Duration
}

// MaxServes bounds the payee sessions a page runs at once.
const MaxServes = 8

// App is one page's paysip.
type App struct {
	cfg    Config
	chain  *chainapi.Client
	store  *kvstore.Store
	log    *slog.Logger
	params string

	mu     sync.Mutex
	wallet *wallet.Wallet
	offer  *sipext.Offer  // the browser payee's price, once set
	aor    string         // the payee's own address, for its listing
	active map[string]int // channels being served now -> sessions
	serves int            // payee sessions running
}

// New makes an app; the wallet is then created, restored or unlocked.
func New(cfg Config) (*App, error) {
	params, err := chain.ParamsByName(cfg.Network)
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Err: err}
	}
	if cfg.RoundTrip == nil || cfg.Wallet == nil || cfg.Channels == nil {
		return nil, &Error{Code: CodeBadRequest, Err: errors.New("init needs chainRequest and storage")}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &App{cfg: cfg, chain: chainapi.NewClient(params, cfg.RoundTrip), store: &kvstore.Store{KV: cfg.Channels},
		log: log.With("component", "browser"), params: params.Name, active: map[string]int{}}, nil
}

// Chain is the app's chain (the SIP API client).
func (a *App) Chain() *chainapi.Client { return a.chain }

// Store is the app's channel store.
func (a *App) Store() *kvstore.Store { return a.store }

// Wallet returns the unlocked wallet, or an error coded locked/no_wallet.
func (a *App) Wallet() (*wallet.Wallet, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wallet != nil {
		return a.wallet, nil
	}
	if !wallet.Exists(a.cfg.Wallet) {
		return nil, &Error{Code: CodeNoWallet, Err: errors.New("no wallet in this browser: create or restore one")}
	}
	return nil, &Error{Code: CodeLocked, Err: errors.New("wallet locked: unlock it with its passphrase")}
}

// WalletExists reports whether the page's storage holds a wallet.
func (a *App) WalletExists() bool { return wallet.Exists(a.cfg.Wallet) }

// CreateWallet makes a new wallet (24 words, BIP39) and returns its
// mnemonic; passphrase "" stores it unencrypted.
func (a *App) CreateWallet(passphrase string) (string, error) {
	w, mnemonic, err := wallet.CreateIn(a.cfg.Wallet, a.chain, passphrase)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.wallet = w
	a.mu.Unlock()
	return mnemonic, nil
}

// RestoreWallet makes the wallet of an existing mnemonic, finding its used
// addresses through the SIP API (BIP44 gap limit).
func (a *App) RestoreWallet(ctx context.Context, mnemonic, passphrase string) error {
	w, err := wallet.RestoreIn(ctx, a.cfg.Wallet, a.chain, mnemonic, passphrase, true)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.wallet = w
	a.mu.Unlock()
	return nil
}

// Unlock opens the stored wallet with its passphrase ("" for a wallet
// stored unencrypted: another passphrase is refused, as mnemonic does).
func (a *App) Unlock(passphrase string) error {
	w, err := wallet.OpenIn(a.cfg.Wallet, a.chain, passphrase)
	if err != nil {
		return err
	}
	if !w.Encrypted() && passphrase != "" {
		return wallet.ErrWrongPassphrase
	}
	a.mu.Lock()
	a.wallet = w
	a.mu.Unlock()
	return nil
}

// Mnemonic returns the backup words once the passphrase is given again.
func (a *App) Mnemonic(passphrase string) (string, error) {
	w, err := a.Wallet()
	if err != nil {
		return "", err
	}
	if err := w.CheckPassphrase(passphrase); err != nil {
		return "", err
	}
	return w.Mnemonic(), nil
}

// Balance is the wallet's money, in satoshis.
type Balance struct {
	ConfirmedSat   int64 `json:"confirmedSat"`
	UnconfirmedSat int64 `json:"unconfirmedSat"`
	// SpendableSat is the most one payment (a pool) can lock now.
	SpendableSat int64 `json:"spendableSat"`
}

// Balance sums the wallet's coins.
func (a *App) Balance(ctx context.Context) (Balance, error) {
	w, err := a.Wallet()
	if err != nil {
		return Balance{}, err
	}
	b, err := w.Balance(ctx)
	if err != nil {
		return Balance{}, err
	}
	rate, err := a.chain.FeeRate(ctx, 6)
	if err != nil {
		return Balance{}, err
	}
	sp, err := w.Spendable(ctx, rate)
	if err != nil {
		return Balance{}, err
	}
	return Balance{ConfirmedSat: b.Confirmed, UnconfirmedSat: b.Unconfirmed, SpendableSat: sp}, nil
}

// ReceiveAddress hands out the next receive address.
func (a *App) ReceiveAddress() (string, error) {
	w, err := a.Wallet()
	if err != nil {
		return "", err
	}
	addr, err := w.NewAddress()
	if err != nil {
		return "", err
	}
	return addr.EncodeAddress(), nil
}

// Send pays amount to address at the fee estimate for 6 blocks.
func (a *App) Send(ctx context.Context, address string, amountSat int64) (string, error) {
	w, err := a.Wallet()
	if err != nil {
		return "", err
	}
	if amountSat <= 0 {
		return "", &Error{Code: CodeBadRequest, Err: errors.New("amount must be a positive number of satoshis")}
	}
	addr, err := btcutil.DecodeAddress(address, w.Params())
	if err != nil || !addr.IsForNet(w.Params()) {
		return "", &Error{Code: CodeBadAddress, Err: fmt.Errorf("not a %s address: %q", a.params, address)}
	}
	rate, err := a.chain.FeeRate(ctx, 6)
	if err != nil {
		return "", err
	}
	tx, err := w.Send(ctx, addr, amountSat, rate)
	if err != nil {
		return "", err
	}
	return tx.TxHash().String(), nil
}

// Faucet asks the server's regtest faucet for amount to a new receive
// address.
func (a *App) Faucet(ctx context.Context, amountSat int64) (string, error) {
	w, err := a.Wallet()
	if err != nil {
		return "", err
	}
	addr, err := w.NewAddress()
	if err != nil {
		return "", err
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return "", err
	}
	return a.chain.Faucet(ctx, script, amountSat)
}

// payer is the page's payer on the unlocked wallet.
func (a *App) payer() (*agent.Payer, error) {
	w, err := a.Wallet()
	if err != nil {
		return nil, err
	}
	return &agent.Payer{Wallet: w, Chain: a.chain, Store: a.store, Log: a.log}, nil
}

// PayOptions are a page's paid call, with its callbacks.
type PayOptions struct {
	Peer string
	Plan paidcall.Plan
	// OnOpen and OnTick, if set, follow the call (paidcall.Caller's).
	OnOpen func(*paidcall.Result)
	OnTick func(agent.Tick)
}

// Pay runs the caller's side of a paid call on conn (paidcall.Caller.Pay):
// it resumes an open channel with the peer that still has a tenth of its
// pool, or opens one sized to the call. The payee's terms are bounded by
// the plan (the price the caller saw is its ceiling) before anything is
// funded.
func (a *App) Pay(ctx context.Context, conn agent.Conn, o PayOptions) (*paidcall.Result, error) {
	p, err := a.payer()
	if err != nil {
		return nil, err
	}
	if o.Plan.PriceSatPerMin <= 0 && o.Plan.MaxPriceSatPerMin <= 0 {
		return nil, &Error{Code: CodeBadRequest, Err: agent.ErrNoPriceCeiling}
	}
	c := &paidcall.Caller{Payer: p, Log: a.log, OnOpen: o.OnOpen, OnTick: o.OnTick,
		Reusable: func(ctx context.Context, peer string) []string { return a.reusable(ctx, peer) }}
	return c.Pay(ctx, conn, o.Peer, o.Plan)
}

// reusable lists the open payer channels with peer that still hold a
// tenth of their pool, newest first (as paysip call does).
func (a *App) reusable(ctx context.Context, peer string) []string {
	recs, err := a.store.List(ctx, store.StateOpen)
	if err != nil {
		return nil
	}
	var ids []string
	for _, r := range recs {
		if r.Role == store.Payer && r.Peer == peer && r.Channel.CapacitySat-r.SignedSat >= r.Channel.CapacitySat/10 {
			ids = append(ids, r.ID())
		}
	}
	return ids
}

// Offer sets the browser payee's price (and name), and returns the Contact
// parameters of its directory listing for aor (sipext.Offer).
func (a *App) Offer(aor string, o sipext.Offer) ([][2]string, error) {
	if o.PriceSatPerMin <= 0 {
		return nil, &Error{Code: CodeBadRequest, Err: errors.New("a payee needs a positive price in sat/min")}
	}
	a.mu.Lock()
	a.offer, a.aor = &o, aor
	a.mu.Unlock()
	if aor == "" {
		return nil, nil
	}
	return o.ContactParams(aor), nil
}

// payee makes a payee for one session: the CLI's payee settings, settling
// when the call ends (a page may never come back to resume), onPayment
// told of each payment stored.
func (a *App) payee(onPayment func(id string, paid int64)) (*agent.Payee, error) {
	w, err := a.Wallet()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	offer := a.offer
	a.mu.Unlock()
	price := int64(0)
	var metering *meter.Payee
	if offer != nil {
		price = offer.PriceSatPerMin
		metering = &meter.Payee{PriceSatPerMin: price}
	}
	return &agent.Payee{Wallet: w, Chain: a.chain, Store: a.store, Log: a.log, PriceSatPerMin: price,
		Metering: metering, Poll: a.cfg.Poll, OnPayment: onPayment}, nil
}

// Serve runs the payee's side of a paid call on conn (paidcall.Serve):
// every payment is stored (committed) before it is acknowledged, and the
// channel is settled through the SIP API when the call ends. It returns
// the SIP Reason the page's BYE should carry ("" for a plain end).
// Payment is a payment the browser payee stored.
type Payment struct {
	ChannelID string `json:"channelId"`
	// PaidSat is the channel's total held; CapacitySat its pool (the
	// payer's share is CapacitySat - PaidSat).
	PaidSat        int64 `json:"paidSat"`
	CapacitySat    int64 `json:"capacitySat"`
	PriceSatPerMin int64 `json:"priceSatPerMin"`
}

func (a *App) Serve(ctx context.Context, conn agent.Conn, peer string, onPayment func(Payment)) (*agent.PayeeResult, string, error) {
	a.mu.Lock()
	if a.offer == nil {
		a.mu.Unlock()
		return nil, "", &Error{Code: CodeNotPayee, Err: errors.New("set a price first (payee)")}
	}
	if a.serves >= MaxServes {
		a.mu.Unlock()
		return nil, "", &Error{Code: CodeBusy, Err: fmt.Errorf("already %d calls being served", MaxServes)}
	}
	a.serves++
	a.mu.Unlock()
	var held string
	var capacity int64
	price := a.offerPrice()
	p, err := a.payee(func(id string, paid int64) {
		a.mu.Lock()
		first := held == ""
		if first {
			held = id
			a.active[id]++
		}
		a.mu.Unlock()
		if first {
			// The pool, read once (the session's own record).
			if rec, err := a.store.Get(ctx, id); err == nil {
				capacity = rec.Channel.CapacitySat
			}
		}
		if onPayment != nil {
			onPayment(Payment{ChannelID: id, PaidSat: paid, CapacitySat: capacity, PriceSatPerMin: price})
		}
	})
	defer func() {
		a.mu.Lock()
		a.serves--
		if held != "" {
			if a.active[held]--; a.active[held] <= 0 {
				delete(a.active, held)
			}
		}
		a.mu.Unlock()
	}()
	if err != nil {
		return nil, "", err
	}
	return paidcall.Serve(ctx, p, conn, peer)
}

func (a *App) offerPrice() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.offer == nil {
		return 0
	}
	return a.offer.PriceSatPerMin
}

// Settled is a settlement (or refund) broadcast.
type Settled struct {
	ChannelID string `json:"channelId"`
	TxID      string `json:"txid"`
}

// SettleOpen settles the payee channels a previous page left open: the
// code path paysip payee runs at start (Payee.Recover: spent channels
// recognised, due ones settled, lost settlements sent again), then every
// other open payee channel holding a payment and not served now by this
// page (a page does not come back for the payer to resume, so nothing
// waits). It returns the channels whose settlement went out now.
func (a *App) SettleOpen(ctx context.Context) ([]Settled, error) {
	p, err := a.payee(nil)
	if err != nil {
		return nil, err
	}
	// What has no settlement yet, before anything is done.
	recs, err := a.store.List(ctx, store.StateOpen, store.StateClosing)
	if err != nil {
		return nil, err
	}
	var todo []string
	for _, rec := range recs {
		if rec.Role == store.Payee && rec.BestSat > 0 && rec.CloseTxID == "" {
			todo = append(todo, rec.ID())
		}
	}
	var errs []error
	if err := p.Recover(ctx); err != nil {
		errs = append(errs, err)
	}
	var out []Settled
	for _, id := range todo {
		a.mu.Lock()
		busy := a.active[id] > 0
		a.mu.Unlock()
		rec, err := a.store.Get(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rec.State == store.StateOpen && !busy {
			if _, err := p.Settle(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("settling %s: %w", id, err))
				continue
			}
			if rec, err = a.store.Get(ctx, id); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if rec.CloseTxID != "" {
			out = append(out, Settled{ChannelID: id, TxID: rec.CloseTxID})
		}
	}
	return out, errors.Join(errs...)
}

// WatchRefunds runs one round of the payer's refund watch (what
// Payer.WatchRefunds does every poll): fundings the node lost are sent
// again, and every payer channel whose refund lock the chain has reached
// is refunded. The page calls it at load and then every few minutes.
func (a *App) WatchRefunds(ctx context.Context) ([]Settled, error) {
	p, err := a.payer()
	if err != nil {
		return nil, err
	}
	var out []Settled
	err = p.RefundDue(ctx, func(id, txid string) { out = append(out, Settled{ChannelID: id, TxID: txid}) })
	return out, err
}

// Channel is a stored channel as a page lists it.
type Channel struct {
	ChannelID   string `json:"channelId"`
	Role        string `json:"role"`
	State       string `json:"state"`
	CapacitySat int64  `json:"capacitySat"`
	// PaidSat is what the payee acknowledged (payer) or holds (payee).
	PaidSat     int64  `json:"paidSat"`
	FundingTxID string `json:"fundingTxid"`
	CloseTxID   string `json:"closeTxid"`
	Peer        string `json:"peer"`
	// ExpiryHeight is the refund's lock time (a block height).
	ExpiryHeight uint32 `json:"expiryHeight"`
}

// Channels lists the stored channels, newest first.
func (a *App) Channels(ctx context.Context) ([]Channel, error) {
	recs, err := a.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Channel, 0, len(recs))
	for _, r := range recs {
		paid := r.BestSat
		if r.Role == store.Payer {
			paid = r.AckedSat
		}
		out = append(out, Channel{ChannelID: r.ID(), Role: string(r.Role), State: string(r.State), CapacitySat: r.Channel.CapacitySat,
			PaidSat: paid, FundingTxID: r.FundingTx.TxHash().String(), CloseTxID: r.CloseTxID, Peer: r.Peer, ExpiryHeight: r.Channel.ExpiryHeight})
	}
	return out, nil
}
