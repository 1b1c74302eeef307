package sipserver

import (
	"context"
	"sync"
	"time"
)

// ha1Cache keeps the accounts' digest secrets (HA1) the registrar and
// proxy looked up in the last few seconds, found or not. Profiled under
// sipp load, the store's query (SQLite, prepared per call) was a fifth of
// an authenticated REGISTER's CPU; a client registering or calling again
// within seconds (the second half of every challenge, a burst of
// requests) now costs a map lookup.
//
// What a cache changes: a password change or a removed account takes
// effect within ha1TTL, not at once (the store is written by another
// process, 'paysip user', so there is nothing to invalidate here). An
// unknown name is cached too, so that guessing names costs the store no
// more than one query per name and ha1TTL; the table is bounded
// (MaxSources entries), the least recently used forgotten first.
type ha1Cache struct {
	accounts Accounts
	realm    string
	now      func() time.Time

	mu sync.Mutex
	m  *lru[ha1Key, ha1Entry]
}

// ha1TTL is how long a looked-up HA1 (or its absence) is trusted.
const ha1TTL = 5 * time.Second

type ha1Key struct{ user, alg string }

type ha1Entry struct {
	ha1     string
	ok      bool
	fetched time.Time
}

func newHA1Cache(a Accounts, realm string, max int, now func() time.Time) *ha1Cache {
	return &ha1Cache{accounts: a, realm: realm, now: now, m: newLRU[ha1Key, ha1Entry](max)}
}

// cached reports whether lookup would answer without asking the store.
func (c *ha1Cache) cached(user, alg string) bool {
	if c.accounts == nil {
		return true
	}
	k, now := ha1Key{user, alg}, c.now()
	c.mu.Lock()
	e, hit := c.m.get(k)
	c.mu.Unlock()
	return hit && now.Sub(e.fetched) < ha1TTL && !now.Before(e.fetched)
}

// lookup is sipauth.Verifier's Lookup.
func (c *ha1Cache) lookup(user, alg string) (string, bool) {
	if c.accounts == nil {
		return "", false
	}
	k, now := ha1Key{user, alg}, c.now()
	c.mu.Lock()
	e, hit := c.m.get(k)
	c.mu.Unlock()
	if hit && now.Sub(e.fetched) < ha1TTL && !now.Before(e.fetched) {
		return e.ha1, e.ok
	}
	ha1, ok := c.accounts.UserHA1(context.Background(), user, c.realm, alg)
	c.mu.Lock()
	c.m.put(k, ha1Entry{ha1: ha1, ok: ok, fetched: now})
	c.mu.Unlock()
	return ha1, ok
}
