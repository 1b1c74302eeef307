// Package clustertest holds the tests of paysip beyond one machine (issue
// 14), with real programs started by the tests: paysip serve nodes behind
// Kamailio's dispatcher (deploy/kamailio/kamailio.cfg, the shipped file),
// a throwaway PostgreSQL (internal/pgtest) or SQLite as the store, payee
// and caller processes, and a regtest btcd on which every call is paid
// and settled. Each test skips with a one-line reason when kamailio or
// PostgreSQL is missing, and fails instead under PAYSIP_REQUIRE_INTEROP=1.
package clustertest
