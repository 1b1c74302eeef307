package interop

import (
	"testing"
	"time"
)

func TestSippRegister(t *testing.T) {
	srv := startServer(t, true)
	if err := sipp(t, "register.xml", "bob", srv.addr()).wait(t); err != nil {
		t.Fatalf("sipp REGISTER: %v", err)
	}
	srv.waitBindings(t, "bob", 1)
}

func TestSippRegisterDigest(t *testing.T) {
	// sipp answers only the first challenge and knows only MD5: the
	// default order (MD5 first) suits it.
	srv := startServer(t, false)
	if err := sipp(t, "register_auth.xml", "alice", srv.addr(), "-au", "alice", "-ap", "alice-password").wait(t); err != nil {
		t.Fatalf("sipp REGISTER with digest: %v", err)
	}
	srv.waitBindings(t, "alice", 1)
	// A wrong password ends in another challenge, not 200.
	if err := sipp(t, "register_auth.xml", "bob", srv.addr(), "-au", "bob", "-ap", "wrong").wait(t); err == nil {
		t.Fatal("REGISTER with a wrong password succeeded")
	}
}

// TestSippCall: INVITE/ACK/BYE through the proxy between two sipp
// instances; the callee registered, the caller follows the Record-Route.
func TestSippCall(t *testing.T) {
	srv := startServer(t, true)
	callee := member(t, srv, "uas.xml", "bob")
	srv.waitBindings(t, "bob", 1)
	time.Sleep(200 * time.Millisecond) // the UAS is listening
	if err := sipp(t, "uac.xml", "bob", srv.addr()).wait(t); err != nil {
		t.Fatalf("caller: %v", err)
	}
	if err := callee.wait(t); err != nil {
		t.Fatalf("callee: %v\n%s", err, callee.out)
	}
}

// TestSippMessageForking: three contacts registered at one AOR each get
// the MESSAGE sent to it (the seed's shared-address discovery).
func TestSippMessageForking(t *testing.T) {
	srv := startServer(t, true)
	var members []*sippRun
	for i := 0; i < 3; i++ {
		members = append(members, member(t, srv, "message_member.xml", "room"))
	}
	srv.waitBindings(t, "room", 3)
	time.Sleep(200 * time.Millisecond)
	if err := sipp(t, "message.xml", "room", srv.addr()).wait(t); err != nil {
		t.Fatalf("sender: %v", err)
	}
	for i, m := range members {
		if err := m.wait(t); err != nil {
			t.Fatalf("member %d: %v\n%s", i, err, m.out)
		}
	}
}
