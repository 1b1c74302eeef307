package clustertest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// TestEdgeWebSocket: a WebSocket client (a .invalid contact, as browsers
// register) registers with digest through the shipped edge; a caller on
// TCP at the node sends it a MESSAGE, which the node routes along the
// stored Path back through Kamailio, down the client's WebSocket.
func TestEdgeWebSocket(t *testing.T) {
	requireTool(t, "kamailio", "kamailio kamailio-websocket-modules")
	w := newWorld(t)
	db := filepath.Join(t.TempDir(), "paysip.db")
	w.addAccount(db, "tutor")
	node := w.startServe("serve", db)
	k := startEdge(t, node)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ua, _ := sipgo.NewUA(sipgo.WithUserAgentHostname("df7jal23ls0d.invalid"))
	defer ua.Close()
	wsSrv, _ := sipgo.NewServer(ua)
	got := make(chan string, 1)
	wsSrv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
		got <- string(req.Body())
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	client, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("df7jal23ls0d.invalid"))
	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	reg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "tutor", Host: domain}})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "tutor", Host: domain}, Params: sip.NewParams()}
	from.Params.Add("tag", "wsreg")
	reg.AppendHeader(from)
	reg.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "tutor", Host: "df7jal23ls0d.invalid",
		UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}}, Params: sip.HeaderParams{{K: "+sip.instance", V: `"<urn:uuid:0f7e4c5c>"`}, {K: "reg-id", V: "1"}}})
	reg.AppendHeader(sip.NewHeader("Expires", "300"))
	reg.SetTransport("WS")
	reg.SetDestination(fmt.Sprintf("127.0.0.1:%d", k.wsPort))
	res, err := client.Do(ctx, reg)
	if err == nil && res.StatusCode == 401 {
		res, err = client.DoDigestAuth(ctx, reg, res, sipgo.DigestAuth{Username: "tutor", Password: password})
	}
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER over WebSocket through the edge: %v %v", res, err)
	}
	if c := res.Contact(); c == nil || !strings.Contains(c.String(), "urn:uuid:0f7e4c5c") {
		t.Fatalf("binding not echoed: %v", res)
	}

	cua, _ := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	defer cua.Close()
	caller, _ := sipgo.NewClient(cua, sipgo.WithClientHostname("127.0.0.1"))
	msg := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: "tutor", Host: domain})
	msg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "tutor", Host: domain}})
	mf := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "anonymous", Host: domain}, Params: sip.NewParams()}
	mf.Params.Add("tag", "caller")
	msg.AppendHeader(mf)
	msg.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	msg.SetBody([]byte("over the edge"))
	msg.SetTransport("TCP")
	msg.SetDestination(node.sipAddr())
	mres, err := caller.Do(ctx, msg)
	if err != nil || mres.StatusCode != 200 {
		t.Fatalf("MESSAGE to the WebSocket client: %v %v", mres, err)
	}
	select {
	case body := <-got:
		if body != "over the edge" {
			t.Fatalf("got %q", body)
		}
	case <-ctx.Done():
		t.Fatal("the WebSocket client got nothing")
	}
}
