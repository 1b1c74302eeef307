//go:build js && wasm

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall/js"

	"github.com/paysip/paysip/web/wasm/browser"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

// IndexedDB layout: database "paysip", version 1, object stores "wallet"
// (one document under "wallet": the wallet file's JSON, the mnemonic
// encrypted under the passphrase when one is set) and "channels" (one
// document per channel id, kvstore's). Values are JSON strings.
const (
	dbName        = "paysip"
	dbVersion     = 1
	storeWallet   = "wallet"
	storeChannels = "channels"
	walletKey     = "wallet"
)

// openIDB opens (creating on first use) the page's database.
func openIDB(ctx context.Context, name string) (js.Value, error) {
	idb := js.Global().Get("indexedDB")
	if idb.Type() != js.TypeObject {
		return js.Undefined(), &browser.Error{Code: browser.CodeStorage, Err: errors.New("this browser has no IndexedDB (private mode?): keys cannot be kept")}
	}
	req := idb.Call("open", name, dbVersion)
	done := make(chan error, 1)
	upgrade := js.FuncOf(func(js.Value, []js.Value) any {
		db := req.Get("result")
		names := db.Get("objectStoreNames")
		for _, s := range []string{storeWallet, storeChannels} {
			if !names.Call("contains", s).Bool() {
				db.Call("createObjectStore", s)
			}
		}
		return nil
	})
	success := js.FuncOf(func(js.Value, []js.Value) any { done <- nil; return nil })
	failure := js.FuncOf(func(js.Value, []js.Value) any { done <- domError(req.Get("error"), "opening IndexedDB"); return nil })
	blocked := js.FuncOf(func(js.Value, []js.Value) any {
		js.Global().Get("console").Call("warn", "paysip: IndexedDB upgrade blocked by another tab; waiting for it to close")
		return nil
	})
	req.Set("onupgradeneeded", upgrade)
	req.Set("onsuccess", success)
	req.Set("onerror", failure)
	req.Set("onblocked", blocked)
	// Wait for success or error whatever ctx does: a handler released
	// before the request settles would be called released (a Go panic).
	err := <-done
	req.Set("onupgradeneeded", js.Null())
	req.Set("onsuccess", js.Null())
	req.Set("onerror", js.Null())
	req.Set("onblocked", js.Null())
	upgrade.Release()
	success.Release()
	failure.Release()
	blocked.Release()
	if err != nil {
		return js.Undefined(), err
	}
	db := req.Get("result")
	// Another tab upgrading the database: let it (this page's later
	// transactions fail with code storage; a reload opens the new one).
	// Never released: it lives as long as the database.
	db.Set("onversionchange", js.FuncOf(func(js.Value, []js.Value) any { db.Call("close"); return nil }))
	return db, nil
}

func domError(e js.Value, what string) error {
	msg := "unknown error"
	if e.Type() == js.TypeObject {
		msg = e.Get("name").String() + ": " + e.Get("message").String()
	}
	return &browser.Error{Code: browser.CodeStorage, Err: fmt.Errorf("%s: %w: %s", what, kvstore.ErrAborted, msg)}
}

// idbKV is a kvstore.KV on one object store.
type idbKV struct {
	db    js.Value
	store string
}

// Update implements kvstore.KV: a readwrite transaction with durability
// "strict" (W3C Indexed Database API 3.0, IDBTransactionOptions: the
// browser flushes it to disk before oncomplete), read and
// written in the get's success event, so the transaction stays active
// between them; it returns after oncomplete, that is once the write is
// durable. A write is never acknowledged before that.
func (k *idbKV) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) error {
	tx := k.db.Call("transaction", js.ValueOf([]any{k.store}), "readwrite", map[string]any{"durability": "strict"})
	os := tx.Call("objectStore", k.store)
	get := os.Call("get", key)
	done := make(chan error, 1)
	var fnErr error
	onGet := js.FuncOf(func(js.Value, []js.Value) any {
		var old []byte
		if v := get.Get("result"); v.Type() == js.TypeString {
			old = []byte(v.String())
		}
		b, err := fn(old)
		switch {
		case err != nil:
			fnErr = err
			tx.Call("abort")
		case b != nil:
			os.Call("put", string(b), key)
		}
		return nil
	})
	complete := js.FuncOf(func(js.Value, []js.Value) any { done <- nil; return nil })
	abort := js.FuncOf(func(js.Value, []js.Value) any {
		if fnErr != nil {
			done <- fnErr
		} else {
			done <- domError(tx.Get("error"), "IndexedDB write")
		}
		return nil
	})
	get.Set("onsuccess", onGet)
	tx.Set("oncomplete", complete)
	tx.Set("onabort", abort)
	tx.Set("onerror", js.Null()) // an error aborts the transaction: onabort reports it
	// The transaction ends (complete or abort) whatever ctx does: wait
	// for it, so a write is never reported failed after it committed.
	err := <-done
	onGet.Release()
	complete.Release()
	abort.Release()
	return err
}

// request runs one read request and returns its result.
func (k *idbKV) request(ctx context.Context, do func(os js.Value) js.Value) (js.Value, error) {
	tx := k.db.Call("transaction", js.ValueOf([]any{k.store}), "readonly")
	req := do(tx.Call("objectStore", k.store))
	done := make(chan error, 1)
	ok := js.FuncOf(func(js.Value, []js.Value) any { done <- nil; return nil })
	fail := js.FuncOf(func(js.Value, []js.Value) any { done <- domError(req.Get("error"), "IndexedDB read"); return nil })
	defer func() { ok.Release(); fail.Release() }()
	req.Set("onsuccess", ok)
	req.Set("onerror", fail)
	if err := <-done; err != nil {
		return js.Undefined(), err
	}
	return req.Get("result"), nil
}

// Get implements kvstore.KV.
func (k *idbKV) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := k.request(ctx, func(os js.Value) js.Value { return os.Call("get", key) })
	if err != nil || v.Type() != js.TypeString {
		return nil, err
	}
	return []byte(v.String()), nil
}

// All implements kvstore.KV.
func (k *idbKV) All(ctx context.Context) ([][]byte, error) {
	v, err := k.request(ctx, func(os js.Value) js.Value { return os.Call("getAll") })
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, v.Length())
	for i := 0; i < v.Length(); i++ {
		if s := v.Index(i); s.Type() == js.TypeString {
			out = append(out, []byte(s.String()))
		}
	}
	return out, nil
}

// idbWallet is a wallet.Storage on the "wallet" object store.
type idbWallet struct{ kv *idbKV }

// Load implements wallet.Storage.
func (w idbWallet) Load() ([]byte, error) {
	b, err := w.kv.Get(context.Background(), walletKey)
	if err == nil && b == nil {
		return nil, fs.ErrNotExist
	}
	return b, err
}

// Save implements wallet.Storage (durable: a strict transaction).
func (w idbWallet) Save(b []byte) error {
	return w.kv.Update(context.Background(), walletKey, func([]byte) ([]byte, error) { return b, nil })
}

func (w idbWallet) String() string { return "IndexedDB wallet" }
