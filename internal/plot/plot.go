// Package plot draws the figures of docs/performance.md from the JSON of
// 'paysip bench --json' (and, for the SIP server, from interop/perf's
// JSON), with gonum/plot, as PNG files: the repository makes its own
// pictures, so they can be drawn again from a new run.
package plot

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"github.com/paysip/paysip/internal/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Size of every figure.
const (
	width  = 16 * vg.Centimeter
	height = 10 * vg.Centimeter
)

var (
	blue = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	red  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	grey = color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
)

// Throughput draws the payee's payments per second against the channels
// paying at once, with the verification ceiling of the same run and the
// target (0.8 of it), to path.
func Throughput(r *bench.Result, path string) error {
	if len(r.Throughput) == 0 {
		return errors.New("no throughput levels")
	}
	p := plot.New()
	p.Title.Text = "Payee throughput against concurrency (one run)"
	p.X.Label.Text = "channels paying at once (one payment in flight each)"
	p.Y.Label.Text = "payments stored and acked / s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	pts := make(plotter.XYs, len(r.Throughput))
	for i, st := range r.Throughput {
		pts[i] = plotter.XY{X: float64(st.Channels), Y: st.PaymentsPerS}
	}
	line, dots, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	line.Color, dots.Color = blue, blue
	p.Add(line, dots)
	p.Legend.Add("paysip payee (agent + SQLite)", line, dots)
	lo, hi := pts[0].X, pts[len(pts)-1].X
	if hi <= lo {
		lo, hi = lo/2, hi*2
	}
	for _, h := range []struct {
		y     float64
		name  string
		c     color.Color
		dash  bool
		width vg.Length
	}{
		{r.VerifyCeilingPerS, fmt.Sprintf("raw ECDSA verify ceiling, %d cores", r.VerifyWorkers), red, false, 1},
		{0.8 * r.VerifyCeilingPerS, "target: 0.8 of the ceiling", grey, true, 1},
	} {
		l, err := plotter.NewLine(plotter.XYs{{X: lo, Y: h.y}, {X: hi, Y: h.y}})
		if err != nil {
			return err
		}
		l.Color, l.Width = h.c, h.width
		if h.dash {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(h.name, l)
	}
	p.Y.Min = 0
	p.Y.Max = 1.1 * math.Max(r.VerifyCeilingPerS, maxY(pts))
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.YOffs = vg.Centimeter
	p.Add(plotter.NewGrid())
	return p.Save(width, height, path)
}

// Ratio draws the payee's throughput divided by the verification ceiling
// against concurrency: per second of wall time, and per second of CPU
// time (which the machine's other load does not skew), with the target.
func Ratio(r *bench.Result, path string) error {
	if len(r.Throughput) == 0 || r.VerifyCeilingPerS <= 0 || r.VerifyCeilingPerCPUS <= 0 {
		return errors.New("no throughput levels, or no ceiling")
	}
	p := plot.New()
	p.Title.Text = "Payee throughput / verification ceiling (one run)"
	p.X.Label.Text = "channels paying at once"
	p.Y.Label.Text = "ratio"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	var wall, cpu plotter.XYs
	for _, st := range r.Throughput {
		x := float64(st.Channels)
		wall = append(wall, plotter.XY{X: x, Y: st.PaymentsPerS / r.VerifyCeilingPerS})
		cpu = append(cpu, plotter.XY{X: x, Y: st.PaymentsPerCPUS / r.VerifyCeilingPerCPUS})
	}
	if err := plotutil.AddLinePoints(p, "per second of wall time", wall, "per second of CPU time", cpu); err != nil {
		return err
	}
	lo, hi := wall[0].X, wall[len(wall)-1].X
	if hi <= lo {
		lo, hi = lo/2, hi*2
	}
	target, err := plotter.NewLine(plotter.XYs{{X: lo, Y: 0.8}, {X: hi, Y: 0.8}})
	if err != nil {
		return err
	}
	target.Color, target.Dashes = grey, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(target, plotter.NewGrid())
	p.Legend.Add("target 0.8", target)
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = 0, math.Max(1.1, 1.1*math.Max(maxY(wall), maxY(cpu)))
	return p.Save(width, height, path)
}

// RTT draws the distribution of the payment round trips (a histogram in
// milliseconds) with the p50 and p99 and their targets, to path.
func RTT(r *bench.Result, path string) error {
	if len(r.RTTSamplesMs) == 0 {
		return errors.New("no round-trip samples")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Payment round trip, %d concurrent calls (%d payments)", r.RTTCalls, len(r.RTTSamplesMs))
	p.X.Label.Text = "sign, DataChannel, verify + store, ack back (ms)"
	p.Y.Label.Text = "payments"
	// Up to the 99.5th percentile: one outlier must not squash the rest.
	top := r.RTTSamplesMs[min(len(r.RTTSamplesMs)-1, int(0.995*float64(len(r.RTTSamplesMs))))]
	var vals plotter.Values
	for _, v := range r.RTTSamplesMs {
		if v <= top {
			vals = append(vals, v)
		}
	}
	h, err := plotter.NewHist(vals, 40)
	if err != nil {
		return err
	}
	h.FillColor, h.LineStyle.Color = blue, blue
	p.Add(h)
	ymax := 0.0
	for _, b := range h.Bins {
		ymax = math.Max(ymax, b.Weight)
	}
	for _, m := range []struct {
		x    float64
		name string
		c    color.Color
		dash bool
	}{
		{r.RTTP50ms, fmt.Sprintf("p50 %.2f ms (target < 1)", r.RTTP50ms), red, false},
		{r.RTTP99ms, fmt.Sprintf("p99 %.2f ms (target < 5)", r.RTTP99ms), grey, true},
	} {
		l, err := plotter.NewLine(plotter.XYs{{X: m.x, Y: 0}, {X: m.x, Y: ymax * 1.05}})
		if err != nil {
			return err
		}
		l.Color, l.Width = m.c, 1.5
		if m.dash {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(m.name, l)
	}
	p.X.Min = 0
	p.Legend.Top = true
	return p.Save(width, height, path)
}

// Calls draws, for each step of concurrent calls, the payee process's CPU
// (percent of one core) and its late payments, to path.
func Calls(r *bench.Result, path string) error {
	if len(r.CallSteps) == 0 {
		return errors.New("no call steps")
	}
	p := plot.New()
	p.Title.Text = "One payee process holding paid WebRTC calls (one run)"
	p.X.Label.Text = "concurrent calls (DataChannel + G.711 tone, 1 payment/s each)"
	p.Y.Label.Text = "% of one core / count"
	var cpu, payers, late, drop plotter.XYs
	for _, st := range r.CallSteps {
		x := float64(st.Calls)
		cpu = append(cpu, plotter.XY{X: x, Y: st.PayeeCPUPct})
		payers = append(payers, plotter.XY{X: x, Y: st.PayerCPUPct})
		late = append(late, plotter.XY{X: x, Y: float64(st.LatePayments)})
		drop = append(drop, plotter.XY{X: x, Y: st.AudioDropPct})
	}
	if err := plotutil.AddLinePoints(p, "payee CPU %", cpu, "callers' CPU % (bench process)", payers,
		"late payments", late, "audio frames dropped %", drop); err != nil {
		return err
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	p.Y.Min = 0
	return p.Save(width, height, path)
}

// All draws every figure of a bench result into dir: payee-throughput.png,
// payee-ratio.png, rtt.png, calls.png.
func All(r *bench.Result, dir string) error {
	return errors.Join(
		Throughput(r, filepath.Join(dir, "payee-throughput.png")),
		Ratio(r, filepath.Join(dir, "payee-ratio.png")),
		RTT(r, filepath.Join(dir, "rtt.png")),
		Calls(r, filepath.Join(dir, "calls.png")),
	)
}

func maxY(pts plotter.XYs) float64 {
	m := 0.0
	for _, p := range pts {
		m = math.Max(m, p.Y)
	}
	return m
}
