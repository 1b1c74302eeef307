// Package failpoint kills the process at a named point of the protocol, for
// crash tests: with PAYSIP_FAILPOINT=name (or name#N, the Nth time it is
// reached) the process sends itself SIGKILL there: no deferred function,
// no flush, no goodbye, as a power cut would. Unset, Hit costs one
// comparison.
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	name  string
	nth   = 1
	mu    sync.Mutex
	count int
)

func init() {
	spec := os.Getenv("PAYSIP_FAILPOINT")
	if spec == "" {
		return
	}
	n, rest, ok := strings.Cut(spec, "#")
	name = n
	if ok {
		if v, err := strconv.Atoi(rest); err == nil && v > 0 {
			nth = v
		}
	}
}

// Hit kills the process if this is the configured point.
func Hit(point string) {
	if name == "" || point != name {
		return
	}
	mu.Lock()
	count++
	c := count
	mu.Unlock()
	if c == nth {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns
	}
}
