//go:build js && wasm

package agent

// The browser's build keeps no Prometheus metrics (metrics.go): nothing
// scrapes a page, and client_golang would double the WebAssembly's size.
// These stand-ins take the same calls and do nothing.

type noMetric struct{}

func (noMetric) Inc()                               {}
func (noMetric) Dec()                               {}
func (noMetric) Add(float64)                        {}
func (noMetric) Observe(float64)                    {}
func (noMetric) WithLabelValues(...string) noMetric { return noMetric{} }

var (
	metricPaymentsReceived noMetric
	metricPaymentsAcked    noMetric
	metricPaymentsRefused  noMetric
	metricVerifySeconds    noMetric
	metricStoreSeconds     noMetric
	metricSettlements      noMetric
	metricSettlementFees   noMetric
	metricOpenChannels     noMetric
)
