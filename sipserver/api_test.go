package sipserver_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

const ct = "application/vnd.paysip+json"

func apiCall(t *testing.T, ctx context.Context, u *sipua.UA, body string) (*sip.Response, chainapi.Response) {
	t.Helper()
	res, err := u.Message(ctx, uri("sip:bitcoin@"+domain), ct, []byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var r chainapi.Response
	if len(res.Body()) > 0 {
		if err := json.Unmarshal(res.Body(), &r); err != nil {
			t.Fatalf("answer %q: %v", res.Body(), err)
		}
	}
	return res, r
}

// TestBitcoinAPI drives the SIP API to Bitcoin against a real regtest node.
func TestBitcoinAPI(t *testing.T) {
	env := regtest.New(t)
	r := startServer(t, func(c *sipserver.Config) { c.Chain = env.Chain; c.APIRate = 50 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Anonymous callers are challenged.
	anon := r.ua("nobody", false)
	if res, _ := anon.Message(ctx, uri("sip:bitcoin@"+domain), ct, []byte(`{"v":1,"type":"tip"}`)); res == nil || res.StatusCode != 401 {
		t.Fatalf("anonymous API call: %v", res)
	}
	alice := r.ua("alice", true)
	if _, err := alice.Register(ctx, 300); err != nil {
		t.Fatal(err)
	}
	res, a := apiCall(t, ctx, alice, `{"v":1,"type":"tip","id":"t1"}`)
	tip, _ := env.Chain.TipHeight(ctx)
	if res.StatusCode != 200 || a.Height != tip || a.ID != "t1" {
		t.Fatalf("tip: %d %+v", res.StatusCode, a)
	}
	if _, a = apiCall(t, ctx, alice, `{"v":1,"type":"fee","target":3}`); a.FeeRate <= 0 {
		t.Fatalf("fee %+v", a)
	}
	if res, a = apiCall(t, ctx, alice, `{"v":1,"type":"teleport"}`); res.StatusCode != 400 || a.Code != "bad_request" {
		t.Fatalf("bad request: %d %+v", res.StatusCode, a)
	}

	// Coins of an address, and a watch notified by MESSAGE.
	w, _ := env.NewWallet("w", "")
	addr, _ := w.NewAddress()
	notes := make(chan chainapi.Response, 4)
	alice.OnMessage(func(req *sip.Request) (int, string) {
		var n chainapi.Response
		json.Unmarshal(req.Body(), &n)
		notes <- n
		return 200, "OK"
	})
	if res, a = apiCall(t, ctx, alice, `{"v":1,"type":"watch","address":"`+addr.EncodeAddress()+`","expires":60}`); res.StatusCode != 200 || a.Expires != 60 {
		t.Fatalf("watch: %d %+v", res.StatusCode, a)
	}
	funding := env.Fund(addr, 123_456)
	var note chainapi.Response
	for note.Type != chainapi.TypeNotify || len(note.Coins) == 0 {
		select {
		case note = <-notes:
		case <-ctx.Done():
			t.Fatal("no notification of the watched address")
		}
	}
	if note.Coins[0].ValueSat != 123_456 || note.Coins[0].TxID != funding.TxHash().String() {
		t.Fatalf("notification %+v", note)
	}
	if _, a = apiCall(t, ctx, alice, `{"v":1,"type":"coins","address":"`+addr.EncodeAddress()+`"}`); len(a.Coins) != 1 || a.Coins[0].Confirmations != 1 {
		t.Fatalf("coins %+v", a)
	}

	// Broadcast a transaction through SIP, then ask for its status.
	back, _ := env.Faucet.NewAddress()
	tx, err := w.Send(ctx, back, 50_000, regtest.FeeRate) // built and sent by the wallet...
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tx.Serialize(&buf)
	// ...and sent again through the API: the node already has it, which
	// the API reports as success with the txid.
	if res, a = apiCall(t, ctx, alice, `{"v":1,"type":"broadcast","tx":"`+hex.EncodeToString(buf.Bytes())+`"}`); res.StatusCode != 200 || a.TxID != tx.TxHash().String() {
		t.Fatalf("broadcast: %d %+v", res.StatusCode, a)
	}
	if _, a = apiCall(t, ctx, alice, `{"v":1,"type":"tx_status","txid":"`+tx.TxHash().String()+`"}`); a.Known == nil || !*a.Known || *a.Confirmations != 0 {
		t.Fatalf("status %+v", a)
	}
	// A transaction the node refuses: 488 with a code.
	bad := tx.Copy()
	bad.TxOut[0].Value += 1
	buf.Reset()
	bad.Serialize(&buf)
	if res, a = apiCall(t, ctx, alice, `{"v":1,"type":"broadcast","tx":"`+hex.EncodeToString(buf.Bytes())+`"}`); res.StatusCode != 488 || a.Code == "" {
		t.Fatalf("bad broadcast: %d %+v", res.StatusCode, a)
	}

	// SUBSCRIBE/NOTIFY: an immediate NOTIFY with the current coins.
	notifies := make(chan *sip.Request, 4)
	alice.OnNotify(func(req *sip.Request) { notifies <- req })
	sres, err := alice.Subscribe(ctx, uri("sip:bitcoin@"+domain), sipserver.WatchEvent, ct, []byte(`{"v":1,"type":"watch","address":"`+addr.EncodeAddress()+`"}`), 120)
	if err != nil || sres.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %v %v", sres, err)
	}
	select {
	case n := <-notifies:
		var body chainapi.Response
		json.Unmarshal(n.Body(), &body)
		if n.GetHeader("Event").Value() != sipserver.WatchEvent || body.Type != chainapi.TypeNotify {
			t.Fatalf("NOTIFY %s", n.String())
		}
	case <-ctx.Done():
		t.Fatal("no NOTIFY")
	}
}

// TestBitcoinAPIRateLimit: an account asking faster than its rate (here
// 1/s, burst 2) is answered 503 with Retry-After.
func TestBitcoinAPIRateLimit(t *testing.T) {
	env := regtest.New(t)
	r := startServer(t, func(c *sipserver.Config) { c.Chain = env.Chain; c.APIRate = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := r.ua("alice", true)
	for i := 0; i < 10; i++ {
		res, err := alice.Message(ctx, uri("sip:bitcoin@"+domain), ct, []byte(`{"v":1,"type":"tip"}`))
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == 503 {
			if res.GetHeader("Retry-After") == nil || i < 2 {
				t.Fatalf("request %d: %s", i, res.String())
			}
			return
		}
		if res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
	}
	t.Fatal("ten requests within moments, and no rate limit")
}
