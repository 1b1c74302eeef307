package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/paysip/paysip/internal/regtest"
)

// BenchmarkPayeeAgent is the payee's whole path for one payment (decode,
// rules and signature check, durable store, ack) through agent.Payee and
// its SQLite store, with 1 and 100 channels paying at once over in-memory
// connections, payments signed beforehand. It needs btcd (regtest) to
// open the channels; the timed part touches no node.
func BenchmarkPayeeAgent(b *testing.B) {
	env := regtest.New(b)
	r := &run{dir: b.TempDir(), log: slog.New(slog.DiscardHandler), node: &node{btcd: env.Node, chain: env.Chain, faucet: env.Faucet}}
	ctx := context.Background()
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("channels=%d", n), func(b *testing.B) {
			g, err := r.openRig(ctx, b.TempDir(), n)
			if err != nil {
				b.Fatal(err)
			}
			defer g.close()
			b.ReportAllocs()
			for b.Loop() {
				// b.Loop's first rounds find b.N; each round pays every
				// channel once (n payments).
				b.StopTimer()
				signed, err := g.presign(n, 1)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var wg sync.WaitGroup
				for i, pc := range g.payers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := pc.conn.Send(ctx, signed[i][0]); err != nil {
							b.Error(err)
							return
						}
						if _, err := pc.conn.Recv(ctx); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "payments/s")
		})
	}
}
