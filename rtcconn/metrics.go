package rtcconn

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// What the audio clock did, over every tone track of the process; also
// in the default Prometheus registry (served by 'paysip payee --metrics
// ADDR').
var framesSent, framesLate, framesSkipped atomic.Int64

func init() {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	prometheus.MustRegister(
		counter("paysip_audio_frames_sent_total", "20 ms tone frames written to the calls' RTP streams.", &framesSent),
		counter("paysip_audio_frames_late_total", "Tone frames sent a tick or more after they were due (the audio clock was late).", &framesLate),
		counter("paysip_audio_frames_skipped_total", "Tone frames never sent: due more than 100 ms before the audio clock could send them.", &framesSkipped))
}
