package interop

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// TestKamailioWebSocketEdge: a WebSocket client registers through
// Kamailio (which adds a Path with its flow); a caller on TCP reaches it
// through paysip, which routes along the stored Path back through
// Kamailio, down the client's WebSocket.
func TestKamailioWebSocketEdge(t *testing.T) {
	bin := requireTool(t, "kamailio", "kamailio kamailio-websocket-modules")
	modPath := "/usr/lib/x86_64-linux-gnu/kamailio/modules"
	if _, err := os.Stat(filepath.Join(modPath, "websocket.so")); err != nil {
		requireTool(t, "kamailio-websocket-modules (websocket.so)", "kamailio-websocket-modules")
	}
	// Kamailio is the trusted edge (its Path is accepted only from it).
	srv := startServer(t, true, func(c *sipserver.Config) { c.TrustedEdges = []string{"127.0.0.1"} })
	dir := t.TempDir()
	vals := struct {
		UDPPort, WSPort, PaysipPort int
		ModPath                     string
	}{freePort(t, "udp"), freePort(t, "tcp"), srv.SIPPort(), modPath}
	var cfg bytes.Buffer
	template.Must(template.ParseFiles("testdata/kamailio.cfg.tmpl")).Execute(&cfg, vals)
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	os.WriteFile(cfgPath, cfg.Bytes(), 0o600)
	var logs bytes.Buffer
	k := exec.Command(bin, "-f", cfgPath, "-DD", "-E", "-Y", dir, "-w", dir, "-P", filepath.Join(dir, "k.pid"))
	k.Stdout, k.Stderr = &logs, &logs
	k.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	k.WaitDelay = 2 * time.Second
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-k.Process.Pid, syscall.SIGKILL) // Kamailio and its children
		k.Wait()
		if t.Failed() {
			t.Logf("kamailio:\n%s", logs.String())
		}
	})
	// Kamailio binds its ports some time after it starts (seconds on a
	// loaded machine): wait until the WebSocket port takes connections.
	wsAddr := fmt.Sprintf("127.0.0.1:%d", vals.WSPort)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", wsAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio never listened on %s: %v", wsAddr, err)
		}
	}
	time.Sleep(100 * time.Millisecond) // and its UDP port, bound at the same time

	// The WebSocket client: a sipgo user agent with a .invalid contact, as
	// browsers use.
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
	reg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: domain}})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: domain}, Params: sip.NewParams()}
	from.Params.Add("tag", "wsreg")
	reg.AppendHeader(from)
	reg.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "df7jal23ls0d.invalid",
		UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}}, Params: sip.HeaderParams{{K: "+sip.instance", V: `"<urn:uuid:0f7e4c5c>"`}, {K: "reg-id", V: "1"}}})
	reg.AppendHeader(sip.NewHeader("Expires", "300"))
	reg.AppendHeader(sip.NewHeader("Supported", "path, outbound"))
	reg.SetTransport("WS")
	reg.SetDestination(fmt.Sprintf("127.0.0.1:%d", vals.WSPort))
	res, err := client.Do(ctx, reg)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER over WebSocket through Kamailio: %v %v", res, err)
	}
	// The binding echoes the instance id (JsSIP/SIP.js look for it) and
	// the registrar kept Kamailio's Path.
	if c := res.Contact(); c == nil || !strings.Contains(c.String(), "urn:uuid:0f7e4c5c") {
		t.Fatalf("binding not echoed: %v", res.String())
	}
	bs := srv.Registry().Lookup("sip:bob@"+domain, time.Now())
	if len(bs) != 1 || len(bs[0].Path) != 1 || !strings.Contains(bs[0].Path[0], "received=") {
		t.Fatalf("stored binding %+v", bs)
	}

	// A caller on TCP sends a MESSAGE to bob: paysip -> Kamailio (Route
	// from the Path) -> bob's WebSocket.
	caller, err := sipua.New(sipua.Config{AOR: "sip:caller@" + domain, Proxy: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	var bob sip.Uri
	sip.ParseUri("sip:bob@"+domain, &bob)
	mres, err := caller.Message(ctx, bob, "text/plain", []byte("over the edge"))
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
