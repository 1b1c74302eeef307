package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paysip/paysip/chain"
)

// slowTip answers TipHeight slowly and counts the requests; nothing else
// of the chain is used by Payee.tip.
type slowTip struct {
	chain.Chain
	asked atomic.Int64
}

func (c *slowTip) TipHeight(ctx context.Context) (int32, error) {
	c.asked.Add(1)
	time.Sleep(20 * time.Millisecond)
	return 500, nil
}

// TestTipAskedOnceForAllSessions: a thousand sessions whose expiry watches
// wake together make one request to the node, not a thousand.
func TestTipAskedOnceForAllSessions(t *testing.T) {
	c := &slowTip{}
	a := &Payee{Chain: c, Poll: time.Hour}
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tip, err := a.tip(context.Background())
			if err != nil || tip != 500 {
				t.Errorf("tip %d, %v", tip, err)
			}
		}()
	}
	wg.Wait()
	if n := c.asked.Load(); n != 1 {
		t.Fatalf("the node was asked %d times, want 1", n)
	}
}
