package loadgen

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// WriteSVG draws the report's timeline into dir (created if needed):
// latency.svg, the latency percentiles (p50, p90, p99, p99.9, max) of each
// second, and conns.svg, the open connections and the throughput over
// time. The charts are plain SVG with no scripts or external references.
func (r *Report) WriteSVG(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	charts := map[string]*chart{"latency.svg": r.latencyChart(), "conns.svg": r.connsChart()}
	for name, c := range charts {
		var buf bytes.Buffer
		if err := c.render(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r *Report) title() string {
	return fmt.Sprintf("%s — %s, %s conns", r.URL, r.Mode, count(float64(r.ConnsAsked)))
}

func (r *Report) latencyChart() *chart {
	c := &chart{title: "Latency percentiles per second — " + r.title(), xLabel: "time (s)",
		yLabel: "latency (ms)", marks: r.phaseMarks()}
	type pick struct {
		name, color string
		get         func(Sample) float64
	}
	picks := []pick{
		{"max", "#9467bd", func(s Sample) float64 { return s.Max }},
		{"p99.9", "#d62728", func(s Sample) float64 { return s.P999 }},
		{"p99", "#ff7f0e", func(s Sample) float64 { return s.P99 }},
		{"p90", "#2ca02c", func(s Sample) float64 { return s.P90 }},
		{"p50", "#1f77b4", func(s Sample) float64 { return s.P50 }},
	}
	lo, hi := math.Inf(1), 0.0
	for _, p := range picks {
		sr := series{name: p.name, color: p.color}
		for _, s := range r.Timeline {
			if s.Requests == 0 {
				sr.add(s.T, math.NaN()) // a gap
				continue
			}
			v := p.get(s)
			sr.add(s.T, v)
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		c.left = append(c.left, sr)
	}
	c.logY = hi > 0 && hi/lo > 50
	if hi == 0 {
		c.note = "no responses"
	}
	return c
}

func (r *Report) connsChart() *chart {
	c := &chart{title: "Connections and throughput — " + r.title(), xLabel: "time (s)",
		yLabel: "open connections", y2Label: "responses per second", marks: r.phaseMarks()}
	conns := series{name: "connections", color: "#1f77b4"}
	rate := series{name: "responses/s", color: "#ff7f0e", dashed: true}
	traffic := false
	conns.add(0, 0)
	rate.add(0, 0)
	for _, s := range r.Timeline {
		conns.add(s.T, float64(s.Conns))
		rate.add(s.T, s.Rate)
		traffic = traffic || s.Requests > 0
	}
	c.left = []series{conns}
	if traffic {
		c.right = []series{rate}
	}
	return c
}

// phaseMarks returns where the phases start: from r.Phases, or else
// where the phase changes along the timeline.
func (r *Report) phaseMarks() []mark {
	var out []mark
	for _, p := range r.Phases {
		out = append(out, mark{x: p.Start, label: p.Name})
	}
	if len(out) > 0 {
		return out
	}
	tl := r.Timeline
	prev := ""
	prevT := 0.0
	for _, s := range tl {
		if s.Phase != prev {
			out = append(out, mark{x: prevT, label: s.Phase})
			prev = s.Phase
		}
		prevT = s.T
	}
	return out
}

// series is one line of a chart; NaN y values leave gaps.
type series struct {
	name, color string
	dashed      bool
	xs, ys      []float64
}

func (s *series) add(x, y float64) { s.xs, s.ys = append(s.xs, x), append(s.ys, y) }

// mark is a labelled vertical line.
type mark struct {
	x     float64
	label string
}

// chart is a small line chart with a left and an optional right axis.
type chart struct {
	title, xLabel, yLabel, y2Label string
	note                           string
	logY                           bool
	left, right                    []series
	marks                          []mark
}

const (
	svgW, svgH           = 960.0, 440.0
	padL, padR, padT, pB = 80.0, 80.0, 48.0, 56.0
)

// axis maps data values to pixels.
type axis struct {
	lo, hi   float64
	log      bool
	pix0, px float64 // pixel of lo, pixel span (may be negative)
}

func (a axis) at(v float64) float64 {
	if a.log {
		v = math.Log10(math.Max(v, a.lo))
		return a.pix0 + (v-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))*a.px
	}
	return a.pix0 + (v-a.lo)/(a.hi-a.lo)*a.px
}

// ticks returns tick values for a.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for v := a.lo; v <= a.hi*1.0001; v *= 10 {
			out = append(out, v)
		}
		return out
	}
	step := niceStep((a.hi - a.lo) / 5)
	for v := math.Ceil(a.lo/step) * step; v <= a.hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch f := x / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// yAxis builds an axis covering every finite value of ss.
func yAxis(ss []series, logScale bool) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, v := range s.ys {
			if math.IsNaN(v) || math.IsInf(v, 0) || logScale && v <= 0 {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	a := axis{pix0: svgH - pB, px: -(svgH - pB - padT), log: logScale}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
		a.log = false
	}
	if a.log {
		a.lo = math.Pow(10, math.Floor(math.Log10(lo)))
		a.hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if a.hi <= a.lo {
			a.hi = a.lo * 10
		}
		return a
	}
	a.lo = 0
	step := niceStep(hi / 5)
	a.hi = math.Ceil(hi*1.05/step) * step
	if a.hi <= 0 {
		a.hi = 1
	}
	return a
}

func (c *chart) render(out io.Writer) error {
	w := bufio.NewWriter(out)
	xmax := 1.0
	for _, s := range append(append([]series(nil), c.left...), c.right...) {
		for _, x := range s.xs {
			xmax = math.Max(xmax, x)
		}
	}
	xa := axis{lo: 0, hi: xmax, pix0: padL, px: svgW - padL - padR}
	ya := yAxis(c.left, c.logY)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		svgW, svgH, svgW, svgH)
	fmt.Fprintf(w, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", svgW, svgH)
	fmt.Fprintf(w, `<text x="%.0f" y="24" text-anchor="middle" font-size="15">%s</text>`+"\n", svgW/2, esc(c.title))
	// Grid and y ticks.
	for _, v := range ya.ticks() {
		y := ya.at(v)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", padL, y, svgW-padR, y)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, y+4, esc(tickLabel(v)))
	}
	for _, v := range xa.ticks() {
		x := xa.at(v)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", x, padT, x, svgH-pB)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, svgH-pB+16, esc(tickLabel(v)))
	}
	// Axes and labels.
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#555555"/>`+"\n",
		padL, padT, svgW-padL-padR, svgH-pB-padT)
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", svgW/2, svgH-14, esc(c.xLabel))
	ylabel := c.yLabel
	if ya.log {
		ylabel += " (log scale)"
	}
	fmt.Fprintf(w, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
		(svgH-pB+padT)/2, esc(ylabel))
	// Phase marks; labels of marks close together are stacked.
	lastX, row := math.Inf(-1), 0
	for _, m := range c.marks {
		x := xa.at(m.x)
		if x-lastX < 60 {
			row++
		} else {
			row = 0
		}
		lastX = x
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999999" stroke-dasharray="4 4"/>`+"\n",
			x, padT, x, svgH-pB)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" fill="#777777">%s</text>`+"\n", x+4, padT+14+14*float64(row),
			esc(m.label))
	}
	for _, s := range c.left {
		drawSeries(w, s, xa, ya)
	}
	if len(c.right) > 0 {
		ra := yAxis(c.right, false)
		ra.pix0, ra.px = ya.pix0, ya.px
		for _, v := range ra.ticks() {
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="start">%s</text>`+"\n", svgW-padR+6, ra.at(v)+4,
				esc(tickLabel(v)))
		}
		fmt.Fprintf(w, `<text transform="translate(%.1f %.1f) rotate(90)" text-anchor="middle">%s</text>`+"\n",
			svgW-18, (svgH-pB+padT)/2, esc(c.y2Label))
		for _, s := range c.right {
			drawSeries(w, s, xa, ra)
		}
	}
	// Legend.
	lx := padL + 10
	for _, s := range append(append([]series(nil), c.left...), c.right...) {
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n",
			lx, padT-8, lx+18, padT-8, s.color, dash)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+22, padT-4, esc(s.name))
		lx += 30 + 7*float64(len(s.name))
	}
	if c.note != "" {
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#777777" font-size="16">%s</text>`+"\n",
			svgW/2, svgH/2, esc(c.note))
	}
	fmt.Fprintln(w, `</svg>`)
	return w.Flush()
}

// drawSeries draws s as polylines, broken at gaps; a lone point is a dot.
func drawSeries(w io.Writer, s series, xa, ya axis) {
	dash := ""
	if s.dashed {
		dash = ` stroke-dasharray="6 3"`
	}
	var pts [][2]float64
	flush := func() {
		switch len(pts) {
		case 0:
		case 1:
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"/>`+"\n", pts[0][0], pts[0][1], s.color)
		default:
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="`, s.color, dash)
			for i, p := range pts {
				if i > 0 {
					io.WriteString(w, " ")
				}
				fmt.Fprintf(w, "%.1f,%.1f", p[0], p[1])
			}
			io.WriteString(w, "\"/>\n")
		}
		pts = pts[:0]
	}
	for i, x := range s.xs {
		y := s.ys[i]
		if math.IsNaN(y) || math.IsInf(y, 0) || ya.log && y <= 0 {
			flush()
			continue
		}
		pts = append(pts, [2]float64{xa.at(x), ya.at(y)})
	}
	flush()
}

func tickLabel(v float64) string {
	switch av := math.Abs(v); {
	case av == 0:
		return "0"
	case av >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case av >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	case av >= 1:
		return fmt.Sprintf("%g", math.Round(v*100)/100)
	}
	return fmt.Sprintf("%g", v)
}

// esc escapes s for XML text and attributes.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
