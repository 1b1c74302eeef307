// Package interop holds the interoperability tests: paysip's SIP server
// against real SIP programs from Debian packages (sipp, Kamailio, baresip),
// installed by .ci/run. On a machine without one of them its test skips
// with the reason; with PAYSIP_REQUIRE_INTEROP=1 (CI) it fails instead.
package interop
