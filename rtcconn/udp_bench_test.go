package rtcconn

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// BenchmarkLoopbackUDP measures what the kernel's loopback path costs per
// packet, the process's CPU for both sides (on loopback the receiving
// socket's work runs in the sender's system call), for the shape of the
// tone: one sender sends one 186-byte packet (an SRTP PCMU frame) to each
// of 1,000 destinations every 20 ms. Either each destination is its own
// socket read by its own goroutine (as pion gives every call's ICE
// candidate a socket and a reading goroutine), or all go to one socket
// read by one goroutine (a shared ICE UDP mux); sent one sendto system
// call a packet, or sendmmsg batches (golang.org/x/net/ipv4 WriteBatch);
// read one recvfrom a packet, or recvmmsg batches (ReadBatch). One op is
// one 20 ms tick of 1,000 packets.
func BenchmarkLoopbackUDP(b *testing.B) {
	for _, c := range []struct {
		name                          string
		oneSocket, sendmmsg, recvmmsg bool
	}{
		{name: "socket-each/sendto"},
		{name: "socket-each/sendmmsg", sendmmsg: true},
		{name: "one-socket/sendto/recvfrom", oneSocket: true},
		{name: "one-socket/sendmmsg/recvmmsg", oneSocket: true, sendmmsg: true, recvmmsg: true},
	} {
		b.Run(c.name, func(b *testing.B) {
			const n = 1000
			var got atomic.Int64
			var conns []*net.UDPConn
			listen := func() *net.UDPConn {
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
				return conn
			}
			defer func() {
				for _, conn := range conns {
					conn.Close()
				}
			}()
			read := func(conn *net.UDPConn) {
				if c.recvmmsg {
					msgs := make([]ipv4.Message, 64)
					for i := range msgs {
						msgs[i].Buffers = [][]byte{make([]byte, 1500)}
					}
					pc := ipv4.NewPacketConn(conn)
					for {
						k, err := pc.ReadBatch(msgs, 0)
						if err != nil {
							return
						}
						got.Add(int64(k))
					}
				}
				buf := make([]byte, 1500)
				for {
					if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
					got.Add(1)
				}
			}
			dst := make([]net.Addr, n)
			if c.oneSocket {
				conn := listen()
				conn.SetReadBuffer(4 << 20)
				go read(conn)
				for i := range dst {
					dst[i] = conn.LocalAddr()
				}
			} else {
				for i := range dst {
					conn := listen()
					go read(conn)
					dst[i] = conn.LocalAddr()
				}
			}
			tx := listen()
			pc := ipv4.NewPacketConn(tx)
			payload := make([]byte, 186)
			msgs := make([]ipv4.Message, n)
			for i, a := range dst {
				msgs[i] = ipv4.Message{Buffers: [][]byte{payload}, Addr: a}
			}
			tick := time.NewTicker(frameDur)
			defer tick.Stop()
			cpu0, got0 := cpuNow(b), got.Load()
			b.ResetTimer()
			for range b.N {
				<-tick.C
				if !c.sendmmsg {
					for _, a := range dst {
						if _, err := tx.WriteTo(payload, a); err != nil {
							b.Fatal(err)
						}
					}
					continue
				}
				for m := msgs; len(m) > 0; {
					k, err := pc.WriteBatch(m, 0)
					if err != nil {
						b.Fatal(err)
					}
					m = m[k:]
				}
			}
			time.Sleep(frameDur) // the last tick's packets read
			b.StopTimer()
			cpu, rx := cpuNow(b)-cpu0, got.Load()-got0
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(max(rx, 1)), "us/pkt")
			b.ReportMetric(100*float64(int64(b.N)*n-rx)/float64(int64(b.N)*n), "%lost")
		})
	}
}
