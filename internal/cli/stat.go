package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/cli/ctlapi"
)

func (e *env) statCmd() *cobra.Command {
	var window time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "stat [SERVICE]",
		Short: "Show golden metrics per service: success rate, requests per second, latency",
		Long: `Show the golden metrics of every service of the local mesh (or of SERVICE)
over the last --window, read from the proxies' metrics: meshed instances,
success rate, requests per second, latency percentiles and open TCP
connections. "-" means no data in the window.`,
		Args: cobra.MaximumNArgs(1),
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
			st, err := c.Stat(cmd.Context(), window.String())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if err := filterStat(st, args[0]); err != nil {
					return err
				}
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return writeStat(e.stdout, st)
		},
	}
	cmd.Flags().DurationVar(&window, "window", 30*time.Second, "time window of the metrics")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// filterStat keeps only service name in st.
func filterStat(st *ctlapi.Stat, name string) error {
	var keep []ctlapi.ServiceStat
	var names []string
	for _, s := range st.Services {
		names = append(names, s.Name)
		if s.Name == name || s.Name+"."+s.Namespace == name {
			keep = append(keep, s)
		}
	}
	if len(keep) == 0 {
		return fmt.Errorf("no service %s in the mesh (services: %s)", name, strings.Join(names, ", "))
	}
	st.Services = keep
	return nil
}

// writeStat prints st as a table like `linkerd viz stat`.
func writeStat(w io.Writer, st *ctlapi.Stat) error {
	rows := slices.Clone(st.Services)
	slices.SortFunc(rows, func(a, b ctlapi.ServiceStat) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace, b.Namespace)
	})
	if len(rows) == 0 {
		fmt.Fprintln(w, "No services in the mesh.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMESHED\tSUCCESS\tRPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99\tTCP_CONN")
	for _, s := range rows {
		success, rps := "-", "-"
		if s.Requests > 0 || s.RPS > 0 {
			rps = fmt.Sprintf("%.1frps", s.RPS)
		}
		if s.SuccessRate != nil {
			success = fmt.Sprintf("%.2f%%", 100**s.SuccessRate)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%.0f\n", s.Name, s.Meshed, s.Instances, success, rps,
			latency(s.P50Ms), latency(s.P95Ms), latency(s.P99Ms), s.TCPConnections)
	}
	return tw.Flush()
}

// latency formats milliseconds: one decimal below 10ms, whole above.
func latency(ms *float64) string {
	switch {
	case ms == nil:
		return "-"
	case *ms < 10:
		return fmt.Sprintf("%.1fms", *ms)
	}
	return fmt.Sprintf("%.0fms", *ms)
}
