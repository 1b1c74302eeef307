package rtcconn_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paysip/paysip/rtcconn"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
)

// TestDataChannelThroughTURN: two peers that may use relayed candidates
// only (as two agents behind NATs that allow no direct path) open the
// DataChannel through a TURN server (pion/turn, on loopback) given as
// --turn with its user and password.
func TestDataChannelThroughTURN(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const realm, user, pass = "paysip.test", "agent", "turn-secret"
	key := turn.GenerateAuthKey(user, realm, pass)
	var allocations atomic.Int64
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != user {
				return "", nil, false
			}
			allocations.Add(1)
			return user, key, true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := rtcconn.Config{LoopbackOnly: true, RelayOnly: true,
		ICEServers: []webrtc.ICEServer{{URLs: []string{fmt.Sprintf("turn:%s?transport=udp", pc.LocalAddr())}, Username: user, Credential: pass}}}
	a, offer, err := rtcconn.NewOffer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !strings.Contains(string(offer), "typ relay") || strings.Contains(string(offer), "typ host") {
		t.Fatalf("offer's candidates are not relayed only:\n%s", offer)
	}
	b, answer, err := rtcconn.Answer(ctx, cfg, offer)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	ca, err := a.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ca.Send(ctx, []byte("ping"))
	if m, err := cb.Recv(ctx); err != nil || string(m) != "ping" {
		t.Fatalf("%q %v", m, err)
	}
	if allocations.Load() == 0 {
		t.Fatal("the TURN server saw no authenticated request")
	}
}
