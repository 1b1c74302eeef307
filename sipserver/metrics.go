package sipserver

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus metrics of the SIP server, in the default registry, named
// paysip_sip_*. Counters are shared by every Server of the process (one
// in 'paysip serve'); gauges are read from the running servers when
// scraped, so they cost nothing on the hot path. A counted transaction
// costs one atomic add: its counter is picked from a table made at start
// (BenchmarkMetricsObserve).
//
//	paysip_sip_transactions_total{method,status}  final responses sent, by request method and class (2xx..6xx)
//	paysip_sip_bindings                           registrations held (bindings, live or awaiting the sweep)
//	paysip_sip_aors                               addresses with bindings
//	paysip_sip_calls_proxied_total                INVITEs forwarded
//	paysip_sip_calls_established_total            INVITEs answered 2xx through the proxy
//	paysip_sip_dialogs                            dialogs record-routed and remembered
//	paysip_sip_refused_total{reason}              requests refused or dropped by a limit:
//	                                              rate_limit (503), busy (503: transactions), udp_dropped (datagrams dropped by the UDP guard)
//	paysip_sip_server_transactions                server transactions alive

// metricMethods are the methods counted by name; others count as "other".
var metricMethods = []sip.RequestMethod{sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.REGISTER, sip.OPTIONS, sip.SUBSCRIBE,
	sip.NOTIFY, sip.REFER, sip.INFO, sip.MESSAGE, sip.PRACK, sip.UPDATE, sip.PUBLISH}

var metricClasses = []string{"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}

type sipMetrics struct {
	tx          [][]prometheus.Counter // [method index][class index]
	proxied     prometheus.Counter
	established prometheus.Counter
	rateLimited prometheus.Counter
	busy        prometheus.Counter
}

var (
	metricsOnce sync.Once
	metrics     *sipMetrics

	liveMu      sync.Mutex
	liveServers = map[*Server]struct{}{}
)

// theMetrics registers the metrics in the default registry, once.
func theMetrics() *sipMetrics {
	metricsOnce.Do(func() {
		txv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paysip_sip_transactions_total",
			Help: "SIP server transactions ended with a final response, by request method and status class."}, []string{"method", "status"})
		refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paysip_sip_refused_total",
			Help: "SIP requests refused (503) or datagrams dropped by a limit, by reason."}, []string{"reason"})
		m := &sipMetrics{
			proxied: prometheus.NewCounter(prometheus.CounterOpts{Name: "paysip_sip_calls_proxied_total",
				Help: "INVITEs forwarded by the proxy."}),
			established: prometheus.NewCounter(prometheus.CounterOpts{Name: "paysip_sip_calls_established_total",
				Help: "INVITEs answered with a 2xx through the proxy."}),
			rateLimited: refused.WithLabelValues("rate_limit"),
			busy:        refused.WithLabelValues("busy"),
		}
		names := append(methodNames(), "other")
		for _, name := range names {
			row := make([]prometheus.Counter, len(metricClasses))
			for j, c := range metricClasses {
				row[j] = txv.WithLabelValues(name, c)
			}
			m.tx = append(m.tx, row)
		}
		prometheus.MustRegister(txv, refused, m.proxied, m.established, liveCollector{
			bindings: prometheus.NewDesc("paysip_sip_bindings", "Registrations (bindings) held.", nil, nil),
			aors:     prometheus.NewDesc("paysip_sip_aors", "Addresses of record with bindings.", nil, nil),
			dialogs:  prometheus.NewDesc("paysip_sip_dialogs", "Dialogs record-routed by the proxy and remembered.", nil, nil),
			txLive:   prometheus.NewDesc("paysip_sip_server_transactions", "SIP server transactions alive.", nil, nil),
			dropped:  prometheus.NewDesc("paysip_sip_refused_udp_dropped_total", "UDP datagrams dropped by the UDP guard (size, input rate, request rate, transactions).", nil, nil),
		})
		metrics = m
	})
	return metrics
}

func methodNames() []string {
	out := make([]string, len(metricMethods))
	for i, m := range metricMethods {
		out[i] = string(m)
	}
	return out
}

// methodIndex is a method's row in sipMetrics.tx.
func methodIndex(m sip.RequestMethod) int {
	for i, x := range metricMethods {
		if x == m {
			return i
		}
	}
	return len(metricMethods)
}

// transaction counts a final response to a request of method m.
func (m *sipMetrics) transaction(method int, code int) {
	c := code/100 - 1
	if c < 0 || c >= len(metricClasses) {
		return
	}
	m.tx[method][c].Inc()
}

// liveCollector reports the gauges of the running servers.
type liveCollector struct {
	bindings, aors, dialogs, txLive, dropped *prometheus.Desc
}

func (c liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bindings
	ch <- c.aors
	ch <- c.dialogs
	ch <- c.txLive
	ch <- c.dropped
}

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	var bindings, aors, dialogs, tx, dropped float64
	liveMu.Lock()
	for s := range liveServers {
		bindings += float64(s.reg.Count())
		aors += float64(s.reg.AORs())
		dialogs += float64(s.dialogs.len())
		tx += float64(s.txLive.Load())
		if s.udp != nil {
			dropped += float64(s.udp.dropped.Load())
		}
	}
	liveMu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.bindings, prometheus.GaugeValue, bindings)
	ch <- prometheus.MustNewConstMetric(c.aors, prometheus.GaugeValue, aors)
	ch <- prometheus.MustNewConstMetric(c.dialogs, prometheus.GaugeValue, dialogs)
	ch <- prometheus.MustNewConstMetric(c.txLive, prometheus.GaugeValue, tx)
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, dropped)
}

// live adds the server to what the gauges report, until the returned
// function is called.
func (s *Server) live() func() {
	liveMu.Lock()
	liveServers[s] = struct{}{}
	liveMu.Unlock()
	return func() {
		liveMu.Lock()
		delete(liveServers, s)
		liveMu.Unlock()
	}
}

// MetricsHandler serves the default registry (Prometheus text format).
func MetricsHandler() http.Handler { return promhttp.Handler() }

// meteredTx counts the transaction's first final response.
type meteredTx struct {
	sip.ServerTransaction
	m      *sipMetrics
	method int
	done   atomic.Bool
	failed func() // called on a final response >= 300 (nil: nothing)
}

func (t *meteredTx) Respond(res *sip.Response) error {
	if res.StatusCode >= 200 && t.done.CompareAndSwap(false, true) {
		t.m.transaction(t.method, res.StatusCode)
		if res.StatusCode >= 300 && t.failed != nil {
			t.failed()
		}
	}
	return t.ServerTransaction.Respond(res)
}
