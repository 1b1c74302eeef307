package clustertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// TestTwoNodesBehindKamailio (issue 14, test 2): two serve nodes on one
// PostgreSQL behind Kamailio's dispatcher. A payee registers through the
// edge; a caller reaches the other node, and the paid call completes and
// settles on chain. The node that took the REGISTER is killed (SIGKILL):
// a new call through the edge still reaches the payee, through the node
// left. Both nodes list the same directory, and a digest nonce issued by
// one is good on the other.
func TestTwoNodesBehindKamailio(t *testing.T) {
	requireTool(t, "kamailio", "kamailio kamailio-websocket-modules")
	db := pgURL(t)
	w := newWorld(t)
	w.addAccount(db, "tutor")
	a, b := w.startServe("serve-a", db), w.startServe("serve-b", db)
	k := startEdge(t, a, b)
	payee := w.payee("payee", "tutor", k.addr(), t.TempDir())
	aor := "sip:tutor@" + domain
	var took, other *serveNode
	switch {
	case a.registeredHere(aor) && !b.registeredHere(aor):
		took, other = a, b
	case b.registeredHere(aor) && !a.registeredHere(aor):
		took, other = b, a
	default:
		t.Fatalf("REGISTER taken by A: %v, by B: %v", a.registeredHere(aor), b.registeredHere(aor))
	}
	t.Logf("the REGISTER went to %s; calling through %s", took.name, other.name)

	// The directory (listings registered through either node) is the
	// same on both, once the change feed ran (250 ms).
	var dirA, dirB string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		dirA, dirB = a.directory(t), b.directory(t)
		if dirA == dirB && strings.Contains(dirA, aor) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("directories differ:\nA %s\nB %s", dirA, dirB)
		}
	}

	// A nonce issued by one node is answered to the other.
	nonceAcrossNodes(t, took, other)

	callerDir := t.TempDir()
	w.fundCaller(callerDir)
	r, err := w.call(callerDir, "tutor", other.sipAddr(), "--seconds", "3", "--close")
	if err != nil || r.paid != 3000 || r.settlement == "" {
		t.Fatalf("call through %s: %v (paid %d)\n%s", other.name, err, r.paid, r.out)
	}
	w.confirmed(r.settlement)
	payee.waitFor(t, "ended: paid 3000 sat", 30*time.Second)
	if !strings.Contains(other.out.String(), "INVITE") && !strings.Contains(other.out.String(), "tutor") {
		t.Logf("note: %s logged nothing of the call", other.name)
	}

	took.kill()
	r, err = w.call(callerDir, "tutor", k.addr(), "--seconds", "2", "--close")
	if err != nil || r.paid != 2000 || r.settlement == "" {
		t.Fatalf("call through the edge after %s died: %v (paid %d)\n%s", took.name, err, r.paid, r.out)
	}
	w.confirmed(r.settlement)
	payee.waitFor(t, "ended: paid 2000 sat", 30*time.Second)
}

// nonceAcrossNodes: a REGISTER challenged by one node is answered to the
// other, which accepts it (the nodes share the nonce secret through the
// store); the same answer replayed to that node is refused.
func nonceAcrossNodes(t *testing.T, first, second *serveNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ua, _ := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	defer ua.Close()
	client, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	register := func(to *serveNode, auth string, cseq uint32) *sip.Response {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "tutor", Host: domain}})
		from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "tutor", Host: domain}, Params: sip.NewParams()}
		from.Params.Add("tag", "nonce-test")
		req.AppendHeader(from)
		req.AppendHeader(sip.NewHeader("Call-ID", "nonce-across-nodes"))
		req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
		// A query (no Contact): nothing changes in the registry.
		if auth != "" {
			req.AppendHeader(sip.NewHeader("Authorization", auth))
		}
		req.SetTransport("TCP")
		req.SetDestination(to.sipAddr())
		res, err := client.Do(ctx, req)
		if err != nil {
			t.Fatalf("REGISTER to %s: %v", to.name, err)
		}
		return res
	}
	res := register(first, "", 1)
	h := res.GetHeader("WWW-Authenticate")
	if res.StatusCode != 401 || h == nil {
		t.Fatalf("%s: %v", first.name, res)
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + domain, Username: "tutor", Password: password, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res := register(second, cred.String(), 2); res.StatusCode != 200 {
		t.Fatalf("%s's nonce answered to %s: %d %s", first.name, second.name, res.StatusCode, res.Reason)
	}
	if res := register(second, cred.String(), 3); res.StatusCode != 401 {
		t.Fatalf("replayed to %s: %d %s", second.name, res.StatusCode, res.Reason)
	}
}
