package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// fill writes one of everything a store holds: payer and payee channels in
// several states, accounts, live, empty and deleted bindings, a secret.
func fill(t *testing.T, d *DB) {
	t.Helper()
	for i := 0; i < 6; i++ {
		role := Payee
		if i%2 == 0 {
			role = Payer
		}
		r := record(t, role, 100+i)
		if err := d.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		switch role {
		case Payee:
			if err := d.PayeePayment(ctx, r.ID(), int64(1000*i+1), []byte{byte(i), 0, 0xff}); err != nil {
				t.Fatal(err)
			}
		case Payer:
			d.PayerSigned(ctx, r.ID(), int64(700*i+2), []byte{7, byte(i)})
			d.PayerAcked(ctx, r.ID(), int64(700*i+1))
		}
		switch i {
		case 3:
			if _, err := d.StartClosing(ctx, r.ID()); err != nil {
				t.Fatal(err)
			}
		case 4:
			d.SetState(ctx, r.ID(), StateRefunded, fmt.Sprintf("%064x", i))
		case 5:
			d.SetState(ctx, r.ID(), StateSettled, fmt.Sprintf("%064x", i))
		}
	}
	for _, u := range []User{{"alice", "paysip.test"}, {"bob", "paysip.test"}, {"alice", "other.test"}} {
		if err := d.AddUser(ctx, u.Name, u.Realm, "correct horse "+u.Name); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour)
	d.PutBinding(ctx, StoredBinding{AOR: "sip:alice@paysip.test", Key: "a", Expires: exp, Data: []byte(`{"c":1}`)})
	d.PutBinding(ctx, StoredBinding{AOR: "sip:alice@paysip.test", Key: "b", Expires: exp, Data: []byte{}})
	d.PutBinding(ctx, StoredBinding{AOR: "sip:bob@paysip.test", Key: "a", Expires: exp, Data: []byte{0, 1, 2}})
	d.DeleteBinding(ctx, "sip:bob@paysip.test", "a")
	if _, err := d.SharedSecret(ctx, "sip-nonce", 32); err != nil {
		t.Fatal(err)
	}
}

// snapshot is everything a store answers, for comparing two stores.
func snapshot(t *testing.T, d *DB) map[string]any {
	t.Helper()
	recs, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chans := map[string]string{}
	for _, r := range recs {
		chans[r.ID()] = fmt.Sprintf("%s %s %s %d %d %d %d %x %s %d %x %x %v", r.Role, r.State, r.Peer, r.KeyIndex, r.SignedSat, r.AckedSat,
			r.BestSat, r.BestSig, r.CloseTxID, r.UpdatedAt.Unix(), txBytes(r.FundingTx), txBytes(r.RefundTx), r.Channel.ExpiryHeight)
	}
	users, _ := d.Users(ctx, "")
	ha1 := map[string]string{}
	for _, u := range users {
		m, _ := d.UserHA1(ctx, u.Name, u.Realm, "MD5")
		s, _ := d.UserHA1(ctx, u.Name, u.Realm, "SHA-256")
		ha1[u.Name+"@"+u.Realm] = m + s
	}
	binds, _ := d.BindingsChangedSince(ctx, time.Time{})
	secret, _ := d.SharedSecret(ctx, "sip-nonce", 32)
	return map[string]any{"channels": chans, "users": ha1, "bindings": binds, "secret": fmt.Sprintf("%x", secret)}
}

// TestCopy: every row of one store copied into another, from and to each
// backend; checked; refused into a non-empty store; run again with merge,
// nothing changes; a differing row is refused and nothing written.
func TestCopy(t *testing.T) {
	for _, src := range backendList {
		for _, dst := range backendList {
			t.Run(src.name+"-to-"+dst.name, func(t *testing.T) {
				from, _ := src.open(t)
				to, _ := dst.open(t)
				fill(t, from)
				rep, err := Copy(ctx, from, to, CopyOptions{})
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]int{"channels": 6, "users": 3, "bindings": 3, "secrets": 1}
				for _, tr := range rep.Tables {
					if tr.Source != want[tr.Name] || tr.Copied != tr.Source || tr.Unchanged != 0 {
						t.Errorf("%+v, want %d copied", tr, want[tr.Name])
					}
				}
				a, b := snapshot(t, from), snapshot(t, to)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("copy differs:\nsource %v\ntarget %v", a, b)
				}
				// Again: refused without merge; with merge, nothing to do.
				if _, err := Copy(ctx, from, to, CopyOptions{}); !errors.Is(err, ErrTargetNotEmpty) {
					t.Fatalf("copy into a filled store: %v", err)
				}
				rep, err = Copy(ctx, from, to, CopyOptions{Merge: true})
				if err != nil {
					t.Fatal(err)
				}
				for _, tr := range rep.Tables {
					if tr.Copied != 0 || tr.Unchanged != want[tr.Name] {
						t.Errorf("second run: %+v", tr)
					}
				}
				// The target moved on (a payment): merge refuses, writes
				// nothing, and says which row.
				recs, _ := to.List(ctx, StateOpen)
				var payee *Record
				for _, r := range recs {
					if r.Role == Payee {
						payee = r
					}
				}
				if err := to.PayeePayment(ctx, payee.ID(), payee.BestSat+1, []byte{9}); err != nil {
					t.Fatal(err)
				}
				extra := record(t, Payee, 999)
				from.Insert(ctx, extra)
				if _, err := Copy(ctx, from, to, CopyOptions{Merge: true}); !errors.Is(err, ErrCopyMismatch) {
					t.Fatalf("merge over a differing row: %v", err)
				}
				if _, err := to.Get(ctx, extra.ID()); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a refused merge wrote a row: %v", err)
				}
			})
		}
	}
}
