package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/paysip/paysip/sipext"
	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// TestDirectoryCommand: an endpoint lists itself at a running server;
// 'paysip directory' shows it.
func TestDirectoryCommand(t *testing.T) {
	bin := paysipBin(t)
	srv, err := sipserver.New(sipserver.Config{Domain: "paysip.test", SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Open: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go srv.Run(ctx)
	<-srv.Ready()
	u, err := sipua.New(sipua.Config{AOR: "sip:tutor@paysip.test", Proxy: fmt.Sprintf("127.0.0.1:%d", srv.SIPPort())})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.JoinDirectory(ctx, sipext.Offer{PriceSatPerMin: 60000, Name: "Maths"}, 300); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "directory", "--json", "--server", fmt.Sprintf("http://127.0.0.1:%d", srv.HTTPPort())).Output()
	if err != nil {
		t.Fatal(err)
	}
	var entries []sipext.Listing
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) != 1 || entries[0].AOR != "sip:tutor@paysip.test" || entries[0].PriceSatPerMin != 60000 || entries[0].Name != "Maths" {
		t.Fatalf("%s: %v", out, err)
	}
}
