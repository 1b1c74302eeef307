package sipserver

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// peerLogHandler is the log handler given to sipgo. What sipgo logs at
// error level is, for a server, nearly always a peer's doing (garbage that
// does not parse, a connection reset, a failed WebSocket upgrade): a
// peer's bad input is a warning, not our bug. So records at error level
// become warnings; every attribute is cut to its first 200 bytes, quoted
// (one 60 KB garbage datagram used to write a 33 KB line with the bytes
// raw); and each message is written at most once a second, the next one
// saying how many were suppressed.
type peerLogHandler struct {
	h  slog.Handler
	st *peerLogState
}

type peerLogState struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newPeerLogHandler(h slog.Handler) *peerLogHandler {
	return &peerLogHandler{h: h, st: &peerLogState{last: map[string]time.Time{}, suppressed: map[string]int{}}}
}

func (p *peerLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return p.h.Enabled(ctx, min(l, slog.LevelWarn))
}

func (p *peerLogHandler) Handle(ctx context.Context, r slog.Record) error {
	level := min(r.Level, slog.LevelWarn)
	suppressed := 0
	if level >= slog.LevelWarn {
		st := p.st
		st.mu.Lock()
		if t, ok := st.last[r.Message]; ok && r.Time.Sub(t) < time.Second {
			st.suppressed[r.Message]++
			st.mu.Unlock()
			return nil
		}
		if len(st.last) > 1024 { // sipgo's messages are fixed strings; never grow unbounded
			clear(st.last)
			clear(st.suppressed)
		}
		st.last[r.Message] = r.Time
		suppressed = st.suppressed[r.Message]
		delete(st.suppressed, r.Message)
		st.mu.Unlock()
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(cutAttr(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return p.h.Handle(ctx, out)
}

func (p *peerLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	cut := make([]slog.Attr, len(as))
	for i, a := range as {
		cut[i] = cutAttr(a)
	}
	return &peerLogHandler{h: p.h.WithAttrs(cut), st: p.st}
}

func (p *peerLogHandler) WithGroup(name string) slog.Handler {
	return &peerLogHandler{h: p.h.WithGroup(name), st: p.st}
}

// cutAttr quotes an attribute's value, cut to 200 bytes, unless it is a
// plain number, bool, time or duration.
func cutAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		return a
	case slog.KindGroup:
		g := a.Value.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = cutAttr(x)
		}
		return slog.Group(a.Key, out...)
	}
	s := a.Value.Resolve().String()
	if len(s) <= 200 && a.Value.Kind() == slog.KindString && printable(s) {
		return a
	}
	return slog.String(a.Key, quote200([]byte(s)))
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// quote200 quotes the first 200 bytes of b, saying how long it was.
func quote200(b []byte) string {
	if len(b) <= 200 {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:200])) + "... (" + strconv.Itoa(len(b)) + " bytes)"
}
