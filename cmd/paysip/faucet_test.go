package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/chainapi"
	"github.com/paysip/paysip/sipua"
)

// TestServeFaucet: 'paysip serve --faucet' on the embedded regtest node
// answers the SIP API's faucet for an anonymous caller (the web app
// without an account): paid and confirmed (sipserver's tests cover the
// refusals and limits).
func TestServeFaucet(t *testing.T) {
	bin := paysipBin(t)
	dir := t.TempDir()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	sipAddr := l.Addr().String()
	l.Close()
	p := startProc(t, bin, "serve", "--faucet", "--domain", "paysip.test", "--datadir", dir, "--sip-addr", sipAddr, "--http-addr", "127.0.0.1:0")
	for i := 0; i < 8 && !strings.Contains(p.out.String(), "paysip serving"); i++ {
		time.Sleep(5 * time.Second) // the embedded node's first start mines its faucet's coins
	}
	p.waitFor(t, "paysip serving paysip.test")
	ua, err := sipua.New(sipua.Config{AOR: "sip:anonymous.web@anonymous.invalid", Proxy: sipAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var to sip.Uri
	sip.ParseUri("sip:bitcoin@paysip.test", &to)
	ask := func(body string) (int, chainapi.Response) {
		t.Helper()
		res, err := ua.Message(ctx, to, "application/vnd.paysip+json", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		var r chainapi.Response
		json.Unmarshal(res.Body(), &r)
		return res.StatusCode, r
	}
	script := "0014" + strings.Repeat("ab", 20)
	code, r := ask(`{"v":1,"type":"faucet","script":"` + script + `","amount_sat":250000}`)
	if code != 200 || len(r.TxID) != 64 {
		t.Fatalf("faucet: %d %+v\n%s", code, r, p.out.String())
	}
	if code, st := ask(`{"v":1,"type":"tx_status","txid":"` + r.TxID + `"}`); code != 200 || st.Confirmations == nil || *st.Confirmations != 1 {
		t.Fatalf("faucet payment not confirmed: %d %+v", code, st)
	}
	if code, c := ask(`{"v":1,"type":"coins","script":"` + script + `"}`); code != 200 || len(c.Coins) != 1 || c.Coins[0].ValueSat != 250_000 {
		t.Fatalf("coins after the faucet: %d %+v", code, c)
	}
}
