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
	var window, sample time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "routes SERVICE",
		Short: "Show the routes of a service: rules, backends and weights, golden metrics",
		Long: `Show how traffic to SERVICE is routed: its HTTPRoute and GRPCRoute rules in
the order proxies try them (Gateway API precedence), each with its match,
backends and weights, filters and request timeout, and the service's own
backends (itself, or its TrafficSplit) that take requests no rule matches.

Per route, the success rate, requests per second and mean latency come
from the clients' proxies, sampled over --sample (0 skips it); below them
the service's golden metrics over --window, all routes together.`,
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
			var stats []RouteStat
			if sample > 0 && len(r.Rules) > 0 {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				if stats, err = e.sampleRoutes(cmd.Context(), st, r.Service, sample); err != nil {
					return err
				}
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					*ctlapi.Routes
					RouteStats []RouteStat `json:"route_stats"`
				}{r, stats})
			}
			return writeRoutes(e.stdout, r, stats, sample)
		},
	}
	cmd.Flags().DurationVar(&window, "window", 30*time.Second, "time window of the service's metrics")
	cmd.Flags().DurationVar(&sample, "sample", time.Second, "how long to sample the traffic of each route (0: do not)")
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
func writeRoutes(w io.Writer, r *ctlapi.Routes, stats []RouteStat, sample time.Duration) error {
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
		if sample > 0 {
			fmt.Fprintln(w)
			writeRouteStats(w, r, stats, sample)
		}
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

// writeRouteStats prints each route's sampled traffic, in rule order.
func writeRouteStats(w io.Writer, r *ctlapi.Routes, stats []RouteStat, sample time.Duration) {
	by := map[string]RouteStat{}
	for _, s := range stats {
		by[s.Route] = s
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "ROUTE\tSUCCESS\tRPS\tLATENCY_MEAN\t(sampled over %s)\n", sample)
	seen := map[string]bool{}
	for _, rr := range r.Rules {
		if seen[rr.Route] {
			continue
		}
		seen[rr.Route] = true
		s := by[rr.Route]
		success, lat := "-", "-"
		if s.SuccessRate != nil {
			success = fmt.Sprintf("%.2f%%", 100**s.SuccessRate)
		}
		if s.MeanLatencyMs != nil {
			lat = latency(s.MeanLatencyMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1frps\t%s\t\n", rr.Route, success, s.RPS, lat)
	}
	_ = tw.Flush()
}
