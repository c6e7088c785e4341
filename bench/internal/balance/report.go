package balance

import (
	"fmt"
	"io"
)

// WriteMarkdown writes the windows as a markdown table.
func WriteMarkdown(w io.Writer, cfg Config, ws []*Window) error {
	if _, err := fmt.Fprintf(w, "Three echo endpoints, one %s slower; %.0f rps open loop, %d connections, %s window.\n\n| balancer | requests | errors | achieved rps | p50 / p90 / p99 / p99.9 (ms) | share of requests: slow / fast / fast |\n|---|---|---|---|---|---|\n",
		cfg.Delay, cfg.Rate, cfg.Connections, cfg.Duration); err != nil {
		return err
	}
	for _, x := range ws {
		if _, err := fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.3f / %.3f / %.3f / %.3f | %.1f %% / %.1f %% / %.1f %% |\n",
			x.Balancer, x.Requests, x.Errors, x.Achieved, x.P50, x.P90, x.P99, x.P999, 100*x.Share[0], 100*x.Share[1], 100*x.Share[2]); err != nil {
			return err
		}
	}
	return nil
}
