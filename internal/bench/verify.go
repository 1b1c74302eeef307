package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/paysip/paysip/sigcheck"
)

// rate is work done in a window: per second of wall time, and per second
// of this process's CPU time (which a machine shared with other work does
// not skew: the share of the cores the process got cancels out).
type rate struct {
	PerS, PerCPUS float64
}

// verifyCeiling is how many raw ECDSA verifications per second (btcec:
// a parsed signature against a parsed key and a 32-byte hash) all of the
// process's cores do for d: the ceiling. With keyed, the same with
// the key's sigcheck.KeyVerifier (its table built before the window), as
// the payee verifies a channel's payments: the payee's own bound if it did
// nothing else.
func verifyCeiling(ctx context.Context, d time.Duration, keyed bool) (rate, error) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return rate{}, err
	}
	hash := sha256.Sum256([]byte("paysip bench"))
	sig := ecdsa.Sign(key, hash[:])
	pub := key.PubKey()
	verify := func() bool { return sig.Verify(hash[:], pub) }
	if keyed {
		kv := sigcheck.New(pub)
		verify = func() bool { return kv.Verify(sig, hash[:]) }
	}
	if !verify() {
		return rate{}, errors.New("verify ceiling: the signature does not verify")
	}
	cpu0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return rate{}, err
	}
	var n atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				verify()
				n.Add(1)
			}
		}()
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rate{}, err
	}
	return measured(float64(n.Load()), time.Since(start), cpu0)
}

// measured is count over the wall time elapsed and over the CPU time the
// process used since cpu0.
func measured(count float64, elapsed time.Duration, cpu0 float64) (rate, error) {
	cpu1, err := cpuSeconds(os.Getpid())
	if err != nil {
		return rate{}, err
	}
	if cpu1 <= cpu0 {
		return rate{}, fmt.Errorf("no CPU time used in %s", elapsed)
	}
	return rate{PerS: count / elapsed.Seconds(), PerCPUS: count / (cpu1 - cpu0)}, nil
}
