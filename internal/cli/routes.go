package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/cli/ctlapi"
)

func (e *env) routesCmd() *cobra.Command {
	var window time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "routes SERVICE",
		Short: "Show the routes of a service: rules, backends and weights, golden metrics",
		Long: `Show how traffic to SERVICE is routed: its HTTPRoute and GRPCRoute rules in
the order proxies try them (Gateway API precedence), each with its match,
backends and weights, filters and request timeout, and the service's own
backends (itself, or its TrafficSplit) that take requests no rule matches.

Success rate, requests per second and latency are the service's over
--window: proxies do not count traffic per route yet, so they are the same
for every route of the service.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: give table or json", output)
			}
			if window < time.Second {
				return fmt.Errorf("--window %s: give at least 1s, e.g. 30s", window)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.Routes(cmd.Context(), args[0], window.String())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return writeRoutes(e.stdout, r)
		},
	}
	cmd.Flags().DurationVar(&window, "window", 30*time.Second, "time window of the metrics")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// backendsText formats backends as "v1=95 (2 ready), v2=5 (1 ready)".
func backendsText(bs []ctlapi.RouteBackend) string {
	if len(bs) == 0 {
		return "(service backends)"
	}
	var s []string
	for _, b := range bs {
		name, _, _ := strings.Cut(b.Service, ".")
		s = append(s, fmt.Sprintf("%s=%d (%d ready)", name, b.Weight, b.Endpoints))
	}
	return strings.Join(s, ", ")
}

// writeRoutes prints r: a table of rules, then the service's metrics.
func writeRoutes(w io.Writer, r *ctlapi.Routes) error {
	fmt.Fprintf(w, "Service %s: backends %s\n\n", r.Service, backendsText(r.Backends))
	if len(r.Rules) == 0 {
		fmt.Fprintln(w, "No HTTPRoute or GRPCRoute has this service as parent: every request goes to its backends.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		fmt.Fprintln(tw, "ROUTE\tRULE\tMATCH\tBACKENDS\tFILTERS\tTIMEOUT")
		for _, rr := range r.Rules {
			filters, timeout := "-", "-"
			if len(rr.Filters) > 0 {
				filters = strings.Join(rr.Filters, "; ")
			}
			if rr.RequestTimeout != "" {
				timeout = rr.RequestTimeout
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", rr.Route, rr.Rule, rr.Match, backendsText(rr.Backends), filters, timeout)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "Requests no rule matches go to the service backends.")
	}
	fmt.Fprintln(w)
	s := r.Stat
	if s == nil {
		fmt.Fprintln(w, "No metrics for the service (the controller has no statistics yet).")
		return nil
	}
	success, rps := "-", "-"
	if s.SuccessRate != nil {
		success = fmt.Sprintf("%.2f%%", 100**s.SuccessRate)
	}
	if s.Requests > 0 || s.RPS > 0 {
		rps = fmt.Sprintf("%.1frps", s.RPS)
	}
	fmt.Fprintf(w, "Service metrics over %s (all routes together): success %s, %s, latency p50 %s p95 %s p99 %s\n",
		r.Window, success, rps, latency(s.P50Ms), latency(s.P95Ms), latency(s.P99Ms))
	return nil
}
