package metrics

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// ContentType is that of the Prometheus text exposition format, 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves the metrics in the Prometheus text format. The text is
// streamed, not assembled first: with a thousand destinations it is
// several megabytes, which a scrape would otherwise hold at once
// (docs/performance.md, "Proxy memory in a 1,000-service mesh"). Writing it
// fails only when the scraper goes away.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		_ = r.WriteText(w)
	})
}

// WriteText writes every metric with at least one series, the Go runtime's
// and the process's included, in the Prometheus text format (0.0.4),
// families ordered by name and series by label values.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		writeFamily(bw, f)
	}
	return bw.Flush()
}

func writeFamily(w *bufio.Writer, f *family) {
	var ss []*series
	var fnValue float64
	if f.fn != nil {
		fnValue = f.fn()
	} else if ss = f.sorted(); len(ss) == 0 {
		return
	}
	w.WriteString("# HELP ")
	w.WriteString(f.name)
	w.WriteByte(' ')
	w.WriteString(helpEscaper.Replace(f.help))
	w.WriteString("\n# TYPE ")
	w.WriteString(f.name)
	w.WriteByte(' ')
	w.WriteString(f.kind)
	w.WriteByte('\n')
	if f.fn != nil {
		writeSample(w, f.name, nil, nil, nil, "", "", fnValue)
		return
	}
	for _, s := range ss {
		if f.kind != kindHistogram {
			writeSample(w, f.name, f.labels, f.order, s.values, "", "", s.value())
			continue
		}
		var cum uint64
		for i, le := range f.buckets {
			cum += s.counts[i].Load()
			writeSample(w, f.name+"_bucket", f.labels, f.order, s.values, "le", formatFloat(le), float64(cum))
		}
		cum += s.counts[len(f.buckets)].Load()
		writeSample(w, f.name+"_bucket", f.labels, f.order, s.values, "le", "+Inf", float64(cum))
		writeSample(w, f.name+"_sum", f.labels, f.order, s.values, "", "", math.Float64frombits(s.sum.Load()))
		writeSample(w, f.name+"_count", f.labels, f.order, s.values, "", "", float64(cum))
	}
}

// writeSample writes one line: name, the labels in order (plus
// extra=extraValue when extra is not ""), the value.
func writeSample(w *bufio.Writer, name string, labels []string, order []int, values []string, extra, extraValue string, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || extra != "" {
		w.WriteByte('{')
		for i, k := range order {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(labels[k])
			w.WriteString(`="`)
			w.WriteString(labelEscaper.Replace(values[k]))
			w.WriteByte('"')
		}
		if extra != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(extra)
			w.WriteString(`="`)
			w.WriteString(extraValue)
			w.WriteByte('"')
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
