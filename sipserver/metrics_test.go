package sipserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paysip/paysip/sipserver"
	"github.com/paysip/paysip/sipua"
)

// scrape reads the server's /metrics into name{labels} -> value.
func scrape(t *testing.T, srv *sipserver.Server) map[string]float64 {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", srv.HTTPPort()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("/metrics: %s %s", res.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, "paysip_sip_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics: after a REGISTER (challenged, then accepted) and a call
// through the proxy, /metrics counts them.
func TestMetrics(t *testing.T) {
	r := startServer(t, func(c *sipserver.Config) { c.Metrics = true })
	before := scrape(t, r.srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tutor := r.ua("tutor", true)
	if _, err := tutor.Register(ctx, 300); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	tutor.OnInvite(func(ic *sipua.IncomingCall) {
		_, err := ic.Answer([]byte("v=0\r\no=tutor\r\n"))
		answered <- err
	})
	caller := r.ua("caller", false)
	call, err := caller.Call(ctx, uri("sip:tutor@"+domain), []byte("v=0\r\no=caller\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The callee's Answer returns once the ACK is in: a BYE sent at once
	// may overtake the ACK (both relayed, the ACK statelessly), and then
	// this test would count what it did not mean to.
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, r.srv)
	delta := func(k string) float64 { return after[k] - before[k] }
	for k, want := range map[string]float64{
		`paysip_sip_transactions_total{method="REGISTER",status="4xx"}`: 1, // the challenge
		`paysip_sip_transactions_total{method="REGISTER",status="2xx"}`: 1,
		`paysip_sip_transactions_total{method="INVITE",status="2xx"}`:   1,
		`paysip_sip_transactions_total{method="BYE",status="2xx"}`:      1,
		`paysip_sip_calls_proxied_total`:                                1,
		`paysip_sip_calls_established_total`:                            1,
	} {
		if got := delta(k); got < want {
			t.Errorf("%s rose by %v, want at least %v", k, got, want)
		}
	}
	if after["paysip_sip_bindings"] < 1 || after["paysip_sip_aors"] < 1 {
		t.Errorf("bindings %v, aors %v", after["paysip_sip_bindings"], after["paysip_sip_aors"])
	}
	if _, ok := after[`paysip_sip_refused_total{reason="rate_limit"}`]; !ok {
		t.Errorf("no rate-limit counter in %v", after)
	}
}

// TestNoMetricsByDefault: /metrics is served only when configured.
func TestNoMetricsByDefault(t *testing.T) {
	r := startServer(t, nil)
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", r.srv.HTTPPort()))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("/metrics without Metrics: %s", res.Status)
	}
}

// BenchmarkMetricsObserve is what a counted transaction adds to the hot
// path: one final response through the metered transaction.
func BenchmarkMetricsObserve(b *testing.B) {
	obs := sipserver.MetricsObserver()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		obs(200)
	}
}
