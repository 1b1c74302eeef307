package kvstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/wire"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/store"
	"github.com/paysip/paysip/web/wasm/kvstore"
)

func key(name string) *btcec.PrivateKey {
	h := sha256.Sum256([]byte(name))
	k, _ := btcec.PrivKeyFromBytes(h[:])
	return k
}

func record(t testing.TB, role store.Role, n int) store.Record {
	payer, payee := key(fmt.Sprint("payer", n)), key("payee")
	script := append([]byte{0, 20}, make([]byte, 20)...)
	ws, _ := channel.MultisigScript(payer.PubKey(), payee.PubKey())
	funding := wire.NewMsgTx(2)
	funding.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: uint32(n)}})
	funding.AddTxOut(wire.NewTxOut(1_000_000, channel.P2WSH(ws)))
	ch, err := channel.NewChannel(wire.OutPoint{Hash: funding.TxHash()}, 1_000_000, payer.PubKey(), payee.PubKey(), 900, script)
	if err != nil {
		t.Fatal(err)
	}
	r := store.Record{Role: role, Peer: "sip:tutor@example.org", KeyIndex: uint32(n), Channel: ch, FundingTx: funding}
	if role == store.Payer {
		r.RefundTx, _ = ch.RefundTx(300)
	}
	return r
}

// class names an agent.Store result the way the agents read it.
func class(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, store.ErrNotFound):
		return "not found"
	case errors.Is(err, store.ErrNotStored):
		return "not stored"
	}
	return "error: " + err.Error()
}

// TestRefusesTampered: a document changed outside (an amount above the
// capacity, another funding) fails to read instead of reading as money.
func TestRefusesTampered(t *testing.T) {
	ctx := context.Background()
	mem := &kvstore.Mem{}
	s := &kvstore.Store{KV: mem}
	r := record(t, store.Payee, 1)
	if err := s.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, tamper := range []func(b []byte) []byte{
		func(b []byte) []byte { return []byte(replace(string(b), `"best_sat":0`, `"best_sat":2000000`)) },
		func(b []byte) []byte { return []byte(replace(string(b), `"v":1`, `"v":9`)) },
		func(b []byte) []byte {
			return []byte(replace(string(b), `"capacity_sat":1000000`, `"capacity_sat":999999`))
		},
		func(b []byte) []byte { return b[:len(b)/2] },
	} {
		m := &kvstore.Mem{}
		orig, _ := mem.Get(ctx, r.ID())
		m.Update(ctx, r.ID(), func([]byte) ([]byte, error) { return tamper(orig), nil })
		if _, err := (&kvstore.Store{KV: m}).Get(ctx, r.ID()); err == nil {
			t.Errorf("tampered document read back: %s", tamper(orig))
		}
	}
}

func replace(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	panic("no " + old + " in " + s)
}
