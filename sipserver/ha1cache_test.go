package sipserver

import (
	"context"
	"testing"
	"time"
)

type countingAccounts struct {
	calls int
	ha1   map[string]string
}

func (a *countingAccounts) UserHA1(_ context.Context, name, realm, alg string) (string, bool) {
	a.calls++
	h, ok := a.ha1[name+"/"+realm+"/"+alg]
	return h, ok
}

// TestHA1Cache: a lookup (found or not) is reused for ha1TTL, then asked
// again; a changed password is seen after ha1TTL; the table is bounded.
func TestHA1Cache(t *testing.T) {
	acc := &countingAccounts{ha1: map[string]string{"alice/d/MD5": "aaa"}}
	now := time.Unix(1_800_000_000, 0)
	c := newHA1Cache(acc, "d", 2, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if h, ok := c.lookup("alice", "MD5"); !ok || h != "aaa" {
			t.Fatalf("alice: %q %v", h, ok)
		}
		if _, ok := c.lookup("mallory", "MD5"); ok {
			t.Fatal("mallory found")
		}
	}
	if acc.calls != 2 {
		t.Fatalf("%d store queries for 6 lookups of 2 names", acc.calls)
	}
	acc.ha1["alice/d/MD5"] = "bbb"
	now = now.Add(ha1TTL)
	if h, _ := c.lookup("alice", "MD5"); h != "bbb" || acc.calls != 3 {
		t.Fatalf("after the TTL: %q, %d queries", h, acc.calls)
	}
	// A clock that went back is not trusted either.
	now = now.Add(-time.Hour)
	c.lookup("alice", "MD5")
	if acc.calls != 4 {
		t.Fatalf("clock went back: %d queries", acc.calls)
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		c.lookup(u, "MD5")
	}
	if n := c.m.len(); n != 2 {
		t.Fatalf("%d entries, bound 2", n)
	}
}
