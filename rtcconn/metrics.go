package rtcconn

import "github.com/prometheus/client_golang/prometheus"

// The audio clock's metrics, in the default Prometheus registry (served by
// 'paysip payee --metrics ADDR'): every tone track of the process.
var (
	metricFramesSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_audio_frames_sent_total",
		Help: "20 ms tone frames written to the calls' RTP streams.",
	})
	metricFramesLate = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_audio_frames_late_total",
		Help: "Tone frames sent a tick or more after they were due (the audio clock was late).",
	})
	metricFramesSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paysip_audio_frames_skipped_total",
		Help: "Tone frames never sent: due more than 100 ms before the audio clock could send them.",
	})
)

func init() {
	prometheus.MustRegister(metricFramesSent, metricFramesLate, metricFramesSkipped)
}
