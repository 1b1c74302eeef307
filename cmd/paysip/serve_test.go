package main

import (
	"github.com/jessevdk/go-flags"
	"net/netip"
	"testing"

	"github.com/paysip/paysip/sipserver"
)

// TestLimitFlags: the serve flags become the server's limits; 0 turns a
// per-source limit off; the UDP reply bound is left to the server unless
// set; nonsense is refused.
func TestLimitFlags(t *testing.T) {
	parse := func(args ...string) (sipserver.Limits, float64, error) {
		opts := defaultLimitOpts()
		if _, err := flags.NewParser(&opts, flags.None).ParseArgs(args); err != nil {
			return sipserver.Limits{}, 0, err
		}
		return opts.limits()
	}
	l, api, err := parse()
	if err != nil || l.MaxConns != sipserver.DefaultLimits.MaxConns || l.RequestRate != 20 || api != 10 || l.UDPReplyFactor != 0 {
		t.Fatalf("defaults: %+v %v %v", l, api, err)
	}
	l, _, err = parse("--request-rate", "0", "--input-rate", "0", "--max-conns-per-ip", "0", "--udp-reply-factor", "0",
		"--limit-exempt", "10.0.0.5, 192.0.2.0/24,::1", "--max-transactions", "5")
	if err != nil || l.RequestRate >= 0 || l.InputRate >= 0 || l.MaxConnsPerIP >= 0 || l.UDPReplyFactor >= 0 || l.MaxTransactions != 5 {
		t.Fatalf("limits off: %+v %v", l, err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("::1/128")}
	if len(l.Exempt) != 3 || l.Exempt[0] != want[0] || l.Exempt[1] != want[1] || l.Exempt[2] != want[2] {
		t.Fatalf("exempt: %v", l.Exempt)
	}
	for _, bad := range [][]string{{"--limit-exempt", "nonsense"}, {"--max-conns", "0"}, {"--max-message-size", "-1"}, {"--idle-timeout", "0s"}} {
		if _, _, err := parse(bad...); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}
