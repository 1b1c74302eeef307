//go:build !(js && wasm)

package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The payee's Prometheus metrics (metrics_wasm.go: none in the browser's
// build, where nothing scrapes them and client_golang would double the
// WebAssembly's size), in the default registry (served at
// /metrics by 'paysip payee --metrics ADDR'). They count what every Payee
// of the process did: one process normally runs one payee.
var (
	metricPaymentsReceived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_payee_payments_received_total",
		Help: "Payment updates received from payers (decoded pay messages).",
	})
	metricPaymentsAcked = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_payee_payments_acked_total",
		Help: "Payments durably stored and acknowledged.",
	})
	metricPaymentsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paysip_payee_payments_refused_total",
		Help: "Payments refused, by reason: the payee's rules or signature check (the paywire error code), not_stored (channel closing or a higher payment held), store_error, flood (too frequent).",
	}, []string{"reason"})
	metricVerifySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "paysip_payee_payment_verification_seconds",
		Help:    "Time to check one payment: the rules, the BIP143 sighash and the ECDSA signature.",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 12), // 25 µs to ~51 ms
	})
	metricStoreSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "paysip_payee_store_commit_seconds",
		Help:    "Time for one payment to be durably committed (group commit included): the wait before its ack.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14), // 50 µs to ~410 ms
	})
	metricSettlements = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_payee_settlements_total",
		Help: "Settlement transactions broadcast (accepted by the node).",
	})
	metricSettlementFees = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_payee_settlement_fees_sat_total",
		Help: "Fees paid by the settlements broadcast, in satoshis.",
	})
	metricOpenChannels = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paysip_payee_open_channels",
		Help: "Channels open in a live session (being paid now).",
	})
)

func init() {
	prometheus.MustRegister(metricPaymentsReceived, metricPaymentsAcked, metricPaymentsRefused,
		metricVerifySeconds, metricStoreSeconds, metricSettlements, metricSettlementFees, metricOpenChannels)
}
