package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
)

// verifyCeiling is how many raw ECDSA verifications per second (btcec:
// a parsed signature against a parsed key and a 32-byte hash) all of the
// process's cores do for d: the payee's bound if it did nothing else.
func verifyCeiling(ctx context.Context, d time.Duration) (float64, error) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return 0, err
	}
	hash := sha256.Sum256([]byte("paysip bench"))
	sig := ecdsa.Sign(key, hash[:])
	pub := key.PubKey()
	if !sig.Verify(hash[:], pub) {
		return 0, errors.New("verify ceiling: the signature does not verify")
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
				sig.Verify(hash[:], pub)
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
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}
