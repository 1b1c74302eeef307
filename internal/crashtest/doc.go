// Package crashtest holds the crash tests: payer and payee nodes run as
// real processes (agentproc) against a real regtest btcd, one of them is
// killed with SIGKILL at a step of the protocol, restarted from its data
// directory, and the final on-chain outcome is checked to the satoshi.
package crashtest
