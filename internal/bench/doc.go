// Package bench is 'paysip bench': it starts what it measures (a regtest
// btcd, a SIP server, a payee process, payers) in a temporary directory,
// measures issue 13's targets 3 to 5 and the demo's start, prints a table
// or one JSON object, and cleans up.
//
// The figures, each measured in the same run so that their ratios hold on
// a shared, noisy machine:
//
//   - verify_ceiling_per_s: raw ECDSA verifications per second on all
//     cores (btcec, the payee's signature check alone).
//   - payee_payments_per_s: payment updates decoded, checked, durably
//     stored and acknowledged per second by one agent.Payee over
//     --channels concurrent channels (in-memory connections, the real
//     agent, channel and SQLite store path), with every payment signed
//     beforehand so that the payers cost nothing during the window;
//     payee_ratio is the two divided.
//   - rtt_p50_ms, rtt_p99_ms: a payment's round trip with 100 concurrent
//     calls (the payer signs, sends it over a pion DataChannel on
//     loopback, the payee process verifies and stores it and acks).
//   - concurrent_calls, late_payments, cpu_per_call_pct,
//     mem_per_call_kib: one 'paysip payee' process holding paid WebRTC
//     calls (DataChannel and a G.711 tone) at one payment a second each,
//     stepped up to --calls; the knee is the last step with no late
//     payment and no dropped audio frame.
//   - demo_first_paid_second_s: 'paysip demo' from its start to its first
//     paid second.
package bench
