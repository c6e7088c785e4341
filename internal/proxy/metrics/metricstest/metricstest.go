// Package metricstest reads a metrics.Registry back the way a Prometheus
// server would, by parsing its text exposition, for tests. Only tests
// import it: it links the Prometheus parser, which the proxy does not.
package metricstest

import (
	"bytes"
	"fmt"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"weft.dev/weft/internal/proxy/metrics"
)

// Gather returns the registry's metric families, parsed from its text
// exposition and ordered by name; an error if the text does not parse.
func Gather(r *metrics.Registry) ([]*dto.MetricFamily, error) {
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		return nil, fmt.Errorf("write metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}
