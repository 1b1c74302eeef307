package plot

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// SIPRuns is the SIP server's load runs against Kamailio (interop/perf
// writes it): for each kind of load, one point per offered rate, server
// and round.
type SIPRuns struct {
	Register     []SIPPoint `json:"register"`      // REGISTER, no authentication
	RegisterAuth []SIPPoint `json:"register_auth"` // REGISTER with digest authentication
	Proxy        []SIPPoint `json:"proxy"`         // calls (INVITE, 200, ACK, BYE) through the proxy
}

// SIPPoint is one load run.
type SIPPoint struct {
	Server   string  `json:"server"` // "paysip" or "kamailio"
	Round    int     `json:"round"`
	Offered  float64 `json:"offered_per_s"`
	Achieved float64 `json:"achieved_per_s"` // as interop/perf counts it (every request answered 200)
	// CPUMicrosPerOp is the server's CPU time per request or call.
	CPUMicrosPerOp float64 `json:"cpu_us_per_op,omitempty"`
	Failed         int64   `json:"failed,omitempty"`
}

// SIP draws sip-register.png and sip-proxy.png into dir: achieved against
// offered rate, one line per server, kind and round.
func SIP(s *SIPRuns, dir string) error {
	var errs []error
	if len(s.Register)+len(s.RegisterAuth) > 0 {
		errs = append(errs, rates("REGISTER over UDP: paysip serve and Kamailio (sipp)", "REGISTER/s",
			map[string][]SIPPoint{"": s.Register, "digest ": s.RegisterAuth}, filepath.Join(dir, "sip-register.png")))
	}
	if len(s.Proxy) > 0 {
		errs = append(errs, rates("Calls through the proxy: paysip serve and Kamailio (sipp uac/uas)", "calls/s",
			map[string][]SIPPoint{"": s.Proxy}, filepath.Join(dir, "sip-proxy.png")))
	}
	if len(errs) == 0 {
		return errors.New("no SIP runs")
	}
	return errors.Join(errs...)
}

func rates(title, unit string, kinds map[string][]SIPPoint, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered " + unit
	p.Y.Label.Text = "achieved " + unit
	type key struct {
		name  string
		round int
	}
	series := map[key]plotter.XYs{}
	for kind, pts := range kinds {
		for _, pt := range pts {
			k := key{kind + pt.Server, pt.Round}
			series[k] = append(series[k], plotter.XY{X: pt.Offered, Y: pt.Achieved})
		}
	}
	keys := make([]key, 0, len(series))
	for k := range series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.name != b.name {
			if a.name < b.name {
				return -1
			}
			return 1
		}
		return a.round - b.round
	})
	var args []any
	for _, k := range keys {
		xy := series[k]
		slices.SortFunc(xy, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		args = append(args, fmt.Sprintf("%s, round %d", k.name, k.round), xy)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return err
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	p.X.Min, p.Y.Min = 0, 0
	return p.Save(width, height, path)
}
