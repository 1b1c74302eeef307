package agent

import (
	"errors"
	"time"

	"github.com/paysip/paysip/channel"
	"github.com/paysip/paysip/store"
)

// refusedReason is the label of a refused payment: the paywire code of a
// protocol refusal, or what went wrong storing it.
func refusedReason(err error) string {
	var pe *channel.ProtocolError
	switch {
	case errors.As(err, &pe):
		return pe.Code
	case errors.Is(err, store.ErrNotStored):
		return "not_stored"
	default:
		return "store_error"
	}
}

// observeSince records the seconds since start in h.
func observeSince(h interface{ Observe(float64) }, start time.Time) {
	h.Observe(time.Since(start).Seconds())
}
