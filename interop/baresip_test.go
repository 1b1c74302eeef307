package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paysip/paysip/sipua"
)

// TestBaresipCallsPricedAddress: baresip, a real SIP phone, registers with
// digest and calls a priced address. It does not offer paysip, so the
// server answers 402 Payment Required with the terms, and no free call
// happens.
func TestBaresipCallsPricedAddress(t *testing.T) {
	bin := requireTool(t, "baresip", "baresip")
	srv := startServer(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The priced endpoint: registered and listed at 60,000 sat/min.
	tutor, err := sipua.New(sipua.Config{AOR: "sip:tutor@" + domain, Proxy: srv.addr(), Username: "tutor", Password: "tutor-password"})
	if err != nil {
		t.Fatal(err)
	}
	defer tutor.Close()
	if err := tutor.KeepRegistered(ctx, 300, &sipua.Offer{PriceSatPerMin: 60_000, Name: "Tutor"}); err != nil {
		t.Fatal(err)
	}
	answered := false
	tutor.OnInvite(func(ic *sipua.IncomingCall) { answered = true; ic.Reject(486, "Busy Here") })

	dir := t.TempDir()
	port := freePort(t, "udp")
	config := fmt.Sprintf(`sip_listen		127.0.0.1:%d
module_path		/usr/lib/baresip/modules
module			g711.so
module			ausine.so
module			aufile.so
module			uuid.so
module_app		account.so
module_app		menu.so
audio_source		ausine,440
audio_player		aufile,%s
audio_alert		aufile,%s
`, port, filepath.Join(dir, "play.wav"), filepath.Join(dir, "alert.wav"))
	os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600)
	// The account names the server by its address (the test domain has no
	// DNS); the server takes its own host:port as the domain. RFC 5626
	// outbound is left off: baresip 1.0 does not register with it here.
	account := fmt.Sprintf("<sip:alice@%s;transport=tcp>;auth_pass=alice-password;regint=300;answermode=manual\n", srv.addr())
	os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o600)

	var out bytes.Buffer
	// -n 127.0.0.1: loopback only (its Contact and SDP too).
	cmd := exec.Command(bin, "-n", "127.0.0.1", "-f", dir, "-e", "/dial sip:tutor@"+srv.addr(), "-t", "6", "-v")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// baresip un-registers when it quits: watch for its binding meanwhile.
	bound := make(chan bool, 1)
	go func() {
		for i := 0; i < 100; i++ {
			if bs := srv.Registry().Lookup("sip:alice@"+domain, time.Now()); len(bs) > 0 {
				bound <- true
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		bound <- false
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	log := out.String()
	if os.Getenv("PAYSIP_TEST_LOG") != "" {
		t.Logf("baresip:\n%s", log)
	}
	if !strings.Contains(log, "402") {
		t.Fatalf("baresip's call was not answered 402:\n%s", log)
	}
	if answered {
		t.Fatal("the priced endpoint was called for free")
	}
	if !<-bound {
		t.Fatal("baresip never had a binding")
	}
}
