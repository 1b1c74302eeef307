package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paysip/paysip/agent"
	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/internal/regtest"
	"github.com/paysip/paysip/paywire"
	"github.com/paysip/paysip/rtcconn"
	"github.com/paysip/paysip/store"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// dataChannelPair connects two WebRTC peers on loopback (the callee with
// audio as given) and returns both ends' DataChannel connections.
func dataChannelPair(tb testing.TB, audio string) (caller, callee agent.Conn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, offer, err := rtcconn.NewOffer(ctx, rtcconn.Config{LoopbackOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	b, answer, err := rtcconn.Answer(ctx, rtcconn.Config{LoopbackOnly: true, Audio: audio}, offer)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	if err := a.SetAnswer(answer); err != nil {
		tb.Fatal(err)
	}
	ca, err := a.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cb, err := b.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return ca, cb
}

// BenchmarkDataChannelRoundTrip is the transport alone under the payment
// round trip: a 250-byte message over a pion DataChannel on loopback and
// its echo back, one at a time (the callee sends a tone, as in a call).
func BenchmarkDataChannelRoundTrip(b *testing.B) {
	for _, audio := range []string{rtcconn.AudioNone, rtcconn.AudioTone} {
		b.Run("audio="+audio, func(b *testing.B) {
			ca, cb := dataChannelPair(b, audio)
			ctx := context.Background()
			go func() {
				for {
					m, err := cb.Recv(ctx)
					if err != nil {
						return
					}
					if cb.Send(ctx, m) != nil {
						return
					}
				}
			}()
			msg := make([]byte, 250)
			for b.Loop() {
				if err := ca.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := ca.Recv(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPaymentRoundTrip is the payment round trip of target 4 taken
// apart, in one process: calls payers, each with a channel open over a
// pion DataChannel on loopback to one agent.Payee (a tone on each call, an
// SQLite store on disk), pay once every gap at their own phase, and each
// payment is timed at every step: the payer's signature, its Send, the
// payee's Recv returning, the store called (decode and check done), the
// store returning (commit durable), the ack's Send, the payer's Recv
// returning. It reports each step's median in microseconds, and the
// round trip's median and 99th percentile. It needs btcd (regtest) to open
// the channels; the timed part touches no node.
func BenchmarkPaymentRoundTrip(b *testing.B) {
	env := regtest.New(b)
	r := &run{dir: b.TempDir(), log: slog.New(slog.DiscardHandler), node: &node{btcd: env.Node, chain: env.Chain, faucet: env.Faucet}}
	// calls=100 at one payment a second each is the bench's step of
	// target 4 (select it with -bench: it opens 100 calls).
	for _, c := range []struct {
		calls int
		gap   time.Duration
	}{{1, 10 * time.Millisecond}, {1, 200 * time.Millisecond}, {10, 10 * time.Millisecond}, {10, 200 * time.Millisecond}, {10, time.Second}, {100, time.Second}} {
		b.Run(fmt.Sprintf("calls=%d/gap=%v", c.calls, c.gap), func(b *testing.B) {
			benchRoundTrip(b, r, c.calls, c.gap)
		})
	}
}

// stepStamps are one payment's times on the payee's side (unix ns),
// written by the payee's conn and store wrappers.
type stepStamps struct {
	recv, storeIn, storeOut, ackSend atomic.Int64
}

// timedStore times PayeePayment for the channel's stamps.
type timedStore struct {
	agent.Store
	by sync.Map // channel id -> *stepStamps
}

func (s *timedStore) PayeePayment(ctx context.Context, id string, paid int64, sig []byte) error {
	st, _ := s.by.Load(id)
	if st != nil {
		st.(*stepStamps).storeIn.Store(time.Now().UnixNano())
	}
	err := s.Store.PayeePayment(ctx, id, paid, sig)
	if st != nil {
		st.(*stepStamps).storeOut.Store(time.Now().UnixNano())
	}
	return err
}

// timedConn stamps the payee's Recv returns and Sends.
type timedConn struct {
	agent.Conn
	st *stepStamps
}

func (c *timedConn) Recv(ctx context.Context) ([]byte, error) {
	m, err := c.Conn.Recv(ctx)
	c.st.recv.Store(time.Now().UnixNano())
	return m, err
}

func (c *timedConn) Send(ctx context.Context, m []byte) error {
	c.st.ackSend.Store(time.Now().UnixNano())
	return c.Conn.Send(ctx, m)
}

func benchRoundTrip(b *testing.B, r *run, calls int, gap time.Duration) {
	ctx := context.Background()
	dir := b.TempDir()
	payeeW, err := r.wallet(filepath.Join(dir, "payee.json"))
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "payee.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ts := &timedStore{Store: db}
	payee := &agent.Payee{Wallet: payeeW, Chain: r.node.chain, Store: ts, Log: r.log, PriceSatPerMin: price,
		Poll: 100 * time.Millisecond, KeepOpen: true, MaxPaymentsPerSec: math.MaxInt32, PaymentBurst: math.MaxInt32}
	payerW, err := r.wallet(filepath.Join(dir, "payer.json"))
	if err != nil {
		b.Fatal(err)
	}
	pw, err := newPayerWallet(payerW)
	if err != nil {
		b.Fatal(err)
	}
	coins, err := r.node.coins(ctx, pw.script, calls, capacity+coinFee)
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	var sessions sync.WaitGroup
	defer func() { stop(); sessions.Wait() }()
	payers := make([]*payer, calls)
	stamps := make([]*stepStamps, calls)
	for i := range payers {
		ca, cb := dataChannelPair(b, rtcconn.AudioTone)
		stamps[i] = &stepStamps{}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			payee.Serve(sctx, &timedConn{Conn: cb, st: stamps[i]}, "sip:payer@bench.invalid")
		}()
		if payers[i], err = openPayer(ctx, ca, pw, r.node.chain, coins[i], capacity, price); err != nil {
			b.Fatal(err)
		}
		ts.by.Store(payers[i].p.Channel().ID(), stamps[i])
	}
	if err := r.node.mine(1); err != nil {
		b.Fatal(err)
	}
	const steps = 8
	names := [steps]string{"sign", "send", "to-payee", "decode+check", "store", "to-ack", "to-payer", "payer-handle"}
	var mu sync.Mutex
	var parts [steps][]float64
	var total []float64
	next := make([]int64, calls)
	for i, pc := range payers {
		if next[i], err = pc.firstPayment(); err != nil {
			b.Fatal(err)
		}
	}
	step, err := payers[0].secondPrice()
	if err != nil {
		b.Fatal(err)
	}
	// Each round every call pays once, at its own random phase in gap.
	for b.Loop() {
		var wg sync.WaitGroup
		for i, pc := range payers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rand.Int64N(int64(gap))))
				var t [10]int64
				t[0] = time.Now().UnixNano()
				effs, err := pc.p.Pay(next[i])
				if err != nil {
					b.Error(err)
					return
				}
				t[1] = time.Now().UnixNano()
				for _, ef := range effs {
					if s, ok := ef.(channel.Send); ok {
						if err := pc.send(ctx, s.Msg); err != nil {
							b.Error(err)
							return
						}
					}
				}
				t[2] = time.Now().UnixNano()
				m, err := pc.conn.Recv(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				t[7] = time.Now().UnixNano()
				msg, err := paywire.Decode(m)
				if err == nil {
					_, err = pc.p.Handle(msg)
				}
				if err != nil {
					b.Error(err)
					return
				}
				t[8] = time.Now().UnixNano()
				st := stamps[i]
				t[3], t[4], t[5], t[6] = st.recv.Load(), st.storeIn.Load(), st.storeOut.Load(), st.ackSend.Load()
				next[i] += step
				mu.Lock()
				for k := range steps {
					parts[k] = append(parts[k], float64(t[k+1]-t[k])/1e3)
				}
				total = append(total, float64(t[8]-t[0])/1e3)
				mu.Unlock()
			}()
		}
		wg.Wait()
		b.StopTimer()
		time.Sleep(gap / 4)
		b.StartTimer()
	}
	for k, name := range names {
		slices.Sort(parts[k])
		b.ReportMetric(parts[k][len(parts[k])/2], name+"-us")
	}
	slices.Sort(total)
	b.ReportMetric(total[len(total)/2], "p50-us")
	b.ReportMetric(total[len(total)*99/100], "p99-us")
}

// BenchmarkDataChannelReceive compares the two ways of reading a pion
// DataChannel under the payment's round trip, on loopback, one 250-byte
// message and its echo at a time, gap apart (a call pays once a second:
// the read loops are parked when a payment comes): "onmessage", pion's
// read loop goroutine calling OnMessage, which hands the message over a
// channel to the reader (rtcconn today); "detached"
// (SettingEngine.DetachDataChannels), the reader's own goroutine reading
// the SCTP stream, one goroutine hand-off fewer per message. It reports
// the round trip's median and 99th percentile in microseconds.
func BenchmarkDataChannelReceive(b *testing.B) {
	for _, detach := range []bool{false, true} {
		for _, gap := range []time.Duration{0, 10 * time.Millisecond} {
			name := "onmessage"
			if detach {
				name = "detached"
			}
			b.Run(fmt.Sprintf("%s/gap=%v", name, gap), func(b *testing.B) {
				a, c := rawDataChannelPair(b, detach)
				go func() {
					buf := make([]byte, 1<<16)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
				}()
				msg, buf := make([]byte, 250), make([]byte, 1<<16)
				var us []float64
				for b.Loop() {
					if gap > 0 {
						b.StopTimer()
						time.Sleep(gap)
						b.StartTimer()
					}
					start := time.Now()
					if _, err := a.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := a.Read(buf); err != nil {
						b.Fatal(err)
					}
					us = append(us, float64(time.Since(start).Nanoseconds())/1e3)
				}
				slices.Sort(us)
				b.ReportMetric(us[len(us)/2], "p50-us")
				b.ReportMetric(us[len(us)*99/100], "p99-us")
			})
		}
	}
}

// msgConn is one end of a DataChannel as messages: Read returns one.
type msgConn interface {
	io.ReadWriter
}

// onMessageConn reads as rtcconn does: OnMessage hands each message to
// Read over a channel.
type onMessageConn struct {
	dc *webrtc.DataChannel
	in chan []byte
}

func (c *onMessageConn) Read(p []byte) (int, error) {
	m, ok := <-c.in
	if !ok {
		return 0, io.EOF
	}
	return copy(p, m), nil
}

func (c *onMessageConn) Write(p []byte) (int, error) { return len(p), c.dc.Send(p) }

// rawDataChannelPair connects two pion peers on loopback (no audio), the
// DataChannel read either through OnMessage or detached.
func rawDataChannelPair(tb testing.TB, detach bool) (caller, callee msgConn) {
	tb.Helper()
	newPC := func() *webrtc.PeerConnection {
		se := webrtc.SettingEngine{}
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		if detach {
			se.DetachDataChannels()
		}
		pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { pc.Close() })
		return pc
	}
	pa, pb := newPC(), newPC()
	ends := make(chan msgConn, 2)
	attach := func(dc *webrtc.DataChannel) {
		if !detach {
			c := &onMessageConn{dc: dc, in: make(chan []byte, 64)}
			dc.OnMessage(func(m webrtc.DataChannelMessage) { c.in <- m.Data })
			dc.OnOpen(func() { ends <- c })
			return
		}
		dc.OnOpen(func() {
			rw, err := dc.Detach()
			if err != nil {
				tb.Error(err)
				return
			}
			ends <- rw
		})
	}
	dc, err := pa.CreateDataChannel("bench", nil)
	if err != nil {
		tb.Fatal(err)
	}
	attach(dc)
	pb.OnDataChannel(attach)
	offer, err := pa.CreateOffer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	gather := func(pc *webrtc.PeerConnection, d webrtc.SessionDescription) webrtc.SessionDescription {
		done := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(d); err != nil {
			tb.Fatal(err)
		}
		<-done
		return *pc.LocalDescription()
	}
	offer = gather(pa, offer)
	if err := pb.SetRemoteDescription(offer); err != nil {
		tb.Fatal(err)
	}
	answer, err := pb.CreateAnswer(nil)
	if err != nil {
		tb.Fatal(err)
	}
	answer = gather(pb, answer)
	if err := pa.SetRemoteDescription(answer); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []msgConn
	for len(got) < 2 {
		select {
		case c := <-ends:
			got = append(got, c)
		case <-ctx.Done():
			tb.Fatal("DataChannel did not open")
		}
	}
	// Which end is which does not matter: the pair echoes.
	return got[0], got[1]
}
