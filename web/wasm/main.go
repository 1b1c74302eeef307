//go:build js && wasm

// Command wasm is paysip in a web page (GOOS=js GOARCH=wasm): it sets
// globalThis.paysip, the API web/wasm/API.md describes (Contract A), on
// package browser: the wallet, payer and payee of the Go agents, keys and
// channels in IndexedDB, the chain through the SIP API only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"syscall/js"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/paidcall"
	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/web/wasm/browser"
)

// Version is the API's version (paysip.version).
const Version = "paysip-wasm/1"

var jsonMarshal = json.Marshal

// the app, once init ran.
var state struct {
	sync.Mutex
	app *browser.App
}

func app() (*browser.App, error) {
	state.Lock()
	defer state.Unlock()
	if state.app == nil {
		return nil, &browser.Error{Code: browser.CodeBadRequest, Err: errors.New("call paysip.init first")}
	}
	return state.app, nil
}

// fn makes an API method returning a Promise of do's result.
func fn(do func(args []js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		return promise(func() (any, error) { return do(args) })
	})
}

// withApp is fn for methods needing the app.
func withApp(do func(a *browser.App, args []js.Value) (any, error)) js.Func {
	return fn(func(args []js.Value) (any, error) {
		a, err := app()
		if err != nil {
			return nil, err
		}
		return do(a, args)
	})
}

// signalCtx is a context cancelled when an AbortSignal (opts.signal)
// aborts.
func signalCtx(o js.Value) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := opt(o, "signal")
	if sig.Type() != js.TypeObject || sig.Get("addEventListener").Type() != js.TypeFunction {
		return ctx, cancel
	}
	if sig.Get("aborted").Truthy() {
		cancel()
		return ctx, cancel
	}
	var onAbort js.Func
	onAbort = js.FuncOf(func(js.Value, []js.Value) any { cancel(); return nil })
	sig.Call("addEventListener", "abort", onAbort, map[string]any{"once": true})
	return ctx, func() {
		cancel()
		sig.Call("removeEventListener", "abort", onAbort)
		onAbort.Release()
	}
}

// timeout bounds the chain's answers for wallet calls.
const timeout = 2 * time.Minute

func main() {
	p := js.Global().Get("Object").New()
	p.Set("version", Version)
	p.Set("init", fn(initApp))
	w := js.Global().Get("Object").New()
	w.Set("exists", withApp(func(a *browser.App, _ []js.Value) (any, error) { return a.WalletExists(), nil }))
	w.Set("create", withApp(func(a *browser.App, args []js.Value) (any, error) {
		pass, err := passArg(args)
		if err != nil {
			return nil, err
		}
		m, err := a.CreateWallet(pass)
		if err != nil {
			return nil, err
		}
		return map[string]any{"mnemonic": m}, nil
	}))
	w.Set("restore", withApp(func(a *browser.App, args []js.Value) (any, error) {
		m, err := strArg(args, 0, "mnemonic", 1024)
		if err != nil {
			return nil, err
		}
		pass, err := passArg(args[1:])
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return map[string]any{}, a.RestoreWallet(ctx, m, pass)
	}))
	w.Set("unlock", withApp(func(a *browser.App, args []js.Value) (any, error) {
		pass, err := passArg(args)
		if err != nil {
			return nil, err
		}
		return map[string]any{}, a.Unlock(pass)
	}))
	w.Set("mnemonic", withApp(func(a *browser.App, args []js.Value) (any, error) {
		pass, err := passArg(args)
		if err != nil {
			return nil, err
		}
		return a.Mnemonic(pass)
	}))
	w.Set("balance", withApp(func(a *browser.App, _ []js.Value) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		b, err := a.Balance(ctx)
		if err != nil {
			return nil, err
		}
		return plain(b), nil
	}))
	w.Set("receiveAddress", withApp(func(a *browser.App, _ []js.Value) (any, error) { return a.ReceiveAddress() }))
	w.Set("send", withApp(func(a *browser.App, args []js.Value) (any, error) {
		addr, err := strArg(args, 0, "address", 128)
		if err != nil {
			return nil, err
		}
		amount, err := sat(js.ValueOf(map[string]any{"amountSat": arg(args, 1)}), "amountSat")
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		txid, err := a.Send(ctx, addr, amount)
		if err != nil {
			return nil, err
		}
		return map[string]any{"txid": txid}, nil
	}))
	w.Set("faucet", withApp(func(a *browser.App, args []js.Value) (any, error) {
		amount, err := sat(js.ValueOf(map[string]any{"amountSat": arg(args, 0)}), "amountSat")
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		txid, err := a.Faucet(ctx, amount)
		if err != nil {
			return nil, err
		}
		return map[string]any{"txid": txid}, nil
	}))
	p.Set("wallet", w)
	// conn is synchronous. Go cannot throw into JavaScript, and the page's
	// Content-Security-Policy forbids building a throwing wrapper from a
	// string: on a bad argument it returns {__paysipError: Error}, which
	// the page throws (API.md).
	p.Set("conn", js.FuncOf(newConn))
	p.Set("pay", withApp(pay))
	p.Set("payee", withApp(payee))
	p.Set("serve", withApp(serve))
	p.Set("channels", withApp(func(a *browser.App, _ []js.Value) (any, error) {
		cs, err := a.Channels(context.Background())
		if err != nil {
			return nil, err
		}
		return plain(cs), nil
	}))
	p.Set("settleOpen", withApp(func(a *browser.App, _ []js.Value) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		s, err := a.SettleOpen(ctx)
		if err != nil && len(s) == 0 {
			return nil, err
		}
		return plain(s), nil
	}))
	p.Set("watchRefunds", withApp(func(a *browser.App, _ []js.Value) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		s, err := a.WatchRefunds(ctx)
		if err != nil && len(s) == 0 {
			return nil, err
		}
		return plain(s), nil
	}))
	js.Global().Set("paysip", p)
	if ready := js.Global().Get("paysipReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {} // serve the page's calls until it goes away
}

func passArg(args []js.Value) (string, error) {
	v := arg(args, 0)
	if v.IsUndefined() || v.IsNull() {
		return "", nil
	}
	return strArg(args, 0, "passphrase", 1024)
}

// initApp is paysip.init({network, domain, chainRequest, dbName}).
func initApp(args []js.Value) (any, error) {
	o := arg(args, 0)
	network, err := str(o, "network", 16)
	if err != nil {
		return nil, err
	}
	domain, err := str(o, "domain", 253)
	if err != nil {
		return nil, err
	}
	name, err := str(o, "dbName", 64)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = dbName
	}
	req := opt(o, "chainRequest")
	if req.Type() != js.TypeFunction {
		return nil, badRequest("init needs chainRequest(jsonString) -> Promise<jsonString>")
	}
	db, err := openIDB(context.Background(), name)
	if err != nil {
		return nil, err
	}
	rt := func(ctx context.Context, body []byte) ([]byte, error) {
		v, err := await(ctx, req.Invoke(string(body)))
		if err != nil {
			return nil, err
		}
		if v.Type() != js.TypeString {
			return nil, errors.New("chainRequest resolved with something other than a string")
		}
		return []byte(v.String()), nil
	}
	var logger *slog.Logger
	if opt(o, "debug").Truthy() {
		logger = slog.Default()
	}
	a, err := browser.New(browser.Config{Network: network, Domain: domain, RoundTrip: safeRT(rt), Log: logger,
		Wallet: idbWallet{&idbKV{db: db, store: storeWallet}}, Channels: &idbKV{db: db, store: storeChannels}})
	if err != nil {
		return nil, err
	}
	state.Lock()
	state.app = a
	state.Unlock()
	return map[string]any{"version": Version}, nil
}

// safeRT turns a throwing chainRequest into an error.
func safeRT(rt func(context.Context, []byte) ([]byte, error)) func(context.Context, []byte) ([]byte, error) {
	return func(ctx context.Context, b []byte) (out []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = errors.New("chainRequest threw")
			}
		}()
		return rt(ctx, b)
	}
}

// pay is paysip.pay(opts).
func pay(a *browser.App, args []js.Value) (any, error) {
	o := arg(args, 0)
	c, err := connOf(o)
	if err != nil {
		return nil, err
	}
	peer, err := str(o, "peer", 512)
	if err != nil {
		return nil, err
	}
	var plan paidcall.Plan
	for _, f := range []struct {
		name string
		to   *int64
	}{{"priceSatPerMin", &plan.PriceSatPerMin}, {"maxPriceSatPerMin", &plan.MaxPriceSatPerMin}, {"seconds", &plan.Seconds},
		{"budgetSat", &plan.BudgetSat}, {"capacitySat", &plan.CapacitySat}, {"maxPoolSat", &plan.MaxCapacitySat}, {"prepay", &plan.Prepay}} {
		if *f.to, err = sat(o, f.name); err != nil {
			return nil, err
		}
	}
	plan.Close = opt(o, "close").Truthy()
	onOpen, onTick := opt(o, "onOpen"), opt(o, "onTick")
	ctx, cancel := signalCtx(o)
	defer cancel()
	var channelID string
	var capacity int64
	res, err := a.Pay(ctx, c, browser.PayOptions{Peer: peer, Plan: plan,
		OnOpen: func(r *paidcall.Result) {
			channelID, capacity = r.ChannelID, r.CapacitySat
			call(onOpen, plain(result(r)))
		},
		OnTick: func(t agent.Tick) {
			call(onTick, plain(map[string]any{"channelId": channelID, "capacitySat": capacity, "elapsedMs": t.Elapsed.Milliseconds(),
				"paidSat": t.PaidSat, "poolLeftSat": t.PoolLeft, "lowBudget": t.LowBudget}))
		}})
	if err != nil {
		return nil, err
	}
	return plain(result(res)), nil
}

// result renders a paidcall.Result for the page.
func result(r *paidcall.Result) map[string]any {
	m := map[string]any{"channelId": r.ChannelID, "resumed": r.Resumed, "poolSat": r.Pool.CapacitySat, "poolReason": r.Pool.Reason,
		"capacitySat": r.CapacitySat, "fundingFeeSat": r.FundingFeeSat, "minPaymentSat": r.MinPaymentSat, "paidSat": r.PaidSat,
		"payments": r.Payments, "end": string(r.End)}
	if r.Closed != nil {
		m["closed"] = map[string]any{"settlementTxid": r.Closed.SettlementTxID, "paidSat": r.Closed.PaidSat}
	}
	return m
}

// payee is paysip.payee({priceSatPerMin, aor, name}).
func payee(a *browser.App, args []js.Value) (any, error) {
	o := arg(args, 0)
	price, err := sat(o, "priceSatPerMin")
	if err != nil {
		return nil, err
	}
	aor, err := str(o, "aor", 512)
	if err != nil {
		return nil, err
	}
	name, err := str(o, "name", 128)
	if err != nil {
		return nil, err
	}
	params, err := a.Offer(aor, sipext.Offer{PriceSatPerMin: price, Name: name})
	if err != nil {
		return nil, err
	}
	list := make([]any, 0, len(params))
	for _, p := range params {
		list = append(list, []any{p[0], p[1]})
	}
	return map[string]any{"contactParams": list}, nil
}

// serve is paysip.serve({conn, peer, onPayment, signal}).
func serve(a *browser.App, args []js.Value) (any, error) {
	o := arg(args, 0)
	c, err := connOf(o)
	if err != nil {
		return nil, err
	}
	peer, err := str(o, "peer", 512)
	if err != nil {
		return nil, err
	}
	onPayment := opt(o, "onPayment")
	ctx, cancel := signalCtx(o)
	defer cancel()
	res, reason, err := a.Serve(ctx, c, peer, func(p browser.Payment) { call(onPayment, plain(p)) })
	if res == nil {
		res = &agent.PayeeResult{}
	}
	out := map[string]any{"channelId": res.ChannelID, "paidSat": res.PaidSat, "settlementTxid": res.SettlementTxID, "hangupReason": reason}
	if err != nil && !paidcall.CleanEnd(err) {
		if res.PaidSat == 0 {
			return nil, err
		}
		// Paid, then ended by an error (the payer late, dropped): the
		// page gets what was earned, with the error's code and reason.
		out["error"], out["code"] = err.Error(), browser.Code(err)
	}
	return plain(out), nil
}
