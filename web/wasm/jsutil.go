//go:build js && wasm

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"syscall/js"

	"github.com/paysip/paysip/web/wasm/browser"
)

// promise runs fn in a goroutine and returns a Promise of its result:
// nothing blocks inside a js.FuncOf callback (the page's event loop would
// stop, and with it the IndexedDB and SIP.js events the Go code waits
// for). A panic in fn is a bug of ours: it rejects with code internal.
func promise(fn func() (any, error)) js.Value {
	executor := js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			v, err := func() (v any, err error) {
				defer func() {
					if r := recover(); r != nil {
						err = &browser.Error{Code: browser.CodeInternal, Err: fmt.Errorf("panic: %v", r)}
					}
				}()
				return fn()
			}()
			if err != nil {
				reject.Invoke(jsError(err))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	defer executor.Release() // the executor runs during New
	return js.Global().Get("Promise").New(executor)
}

// jsError is a JS Error with .message the readable reason and .code the
// stable code.
func jsError(err error) js.Value {
	e := js.Global().Get("Error").New(err.Error())
	e.Set("code", browser.Code(err))
	return e
}

// badRequest is an argument error.
func badRequest(format string, a ...any) error {
	return &browser.Error{Code: browser.CodeBadRequest, Err: fmt.Errorf(format, a...)}
}

// await waits, from a goroutine, for a JS promise.
func await(ctx context.Context, p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var then, catch js.Func
	then = js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{v: arg(args, 0)}
		return nil
	})
	catch = js.FuncOf(func(_ js.Value, args []js.Value) any {
		e := arg(args, 0)
		msg := "rejected"
		if e.Type() == js.TypeObject && e.Get("message").Type() == js.TypeString {
			msg = e.Get("message").String()
		} else if e.Type() == js.TypeString {
			msg = e.String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	release := func() { then.Release(); catch.Release() }
	if p.Type() != js.TypeObject || p.Get("then").Type() != js.TypeFunction {
		release()
		return p, nil // a plain value
	}
	p.Call("then", then, catch)
	select {
	case r := <-ch:
		release()
		return r.v, r.err
	case <-ctx.Done():
		// The functions stay until the promise settles: releasing them
		// now would make its settling call a released function.
		go func() { <-ch; release() }()
		return js.Undefined(), ctx.Err()
	}
}

func arg(args []js.Value, i int) js.Value {
	if i < len(args) {
		return args[i]
	}
	return js.Undefined()
}

// opt reads an optional property of an options object.
func opt(o js.Value, name string) js.Value {
	if o.Type() != js.TypeObject {
		return js.Undefined()
	}
	return o.Get(name)
}

// sat reads an amount of satoshis: a whole, non-negative JS number below
// 2^53 (0 when absent).
func sat(o js.Value, name string) (int64, error) {
	v := opt(o, name)
	if v.IsUndefined() || v.IsNull() {
		return 0, nil
	}
	if v.Type() != js.TypeNumber {
		return 0, badRequest("%s must be a number of satoshis", name)
	}
	f := v.Float()
	if f < 0 || f != math.Trunc(f) || f > 1<<53-1 {
		return 0, badRequest("%s must be a whole number of satoshis from 0 to 2^53-1, not %v", name, f)
	}
	return int64(f), nil
}

// str reads a string property ("" when absent), at most max bytes.
func str(o js.Value, name string, max int) (string, error) {
	v := opt(o, name)
	if v.IsUndefined() || v.IsNull() {
		return "", nil
	}
	if v.Type() != js.TypeString {
		return "", badRequest("%s must be a string", name)
	}
	s := v.String()
	if len(s) > max {
		return "", badRequest("%s longer than %d bytes", name, max)
	}
	return s, nil
}

// strArg reads argument i as a string.
func strArg(args []js.Value, i int, name string, max int) (string, error) {
	v := arg(args, i)
	if v.Type() != js.TypeString {
		return "", badRequest("%s must be a string", name)
	}
	if len(v.String()) > max {
		return "", badRequest("%s longer than %d bytes", name, max)
	}
	return v.String(), nil
}

// call invokes a page callback, if any, from a goroutine; a callback that
// throws is logged, never ends the Go side.
func call(fn js.Value, v any) {
	if fn.Type() != js.TypeFunction {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			js.Global().Get("console").Call("warn", "paysip: callback threw", fmt.Sprint(r))
		}
	}()
	fn.Invoke(v)
}

// plain converts a Go value to a plain JS object through JSON (the API's
// objects are small).
func plain(v any) js.Value {
	b, err := jsonMarshal(v)
	if err != nil {
		return js.Undefined()
	}
	return js.Global().Get("JSON").Call("parse", string(b))
}
