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

func (e *env) edgesCmd() *cobra.Command {
	var window time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "edges",
		Short: "Show the traffic between services: who calls whom, success rate, requests per second",
		Long: `Show every edge of the service graph of the local mesh over the last
--window, read from the callers' proxies: source, destination, success rate
and requests per second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			edges, err := c.Edges(cmd.Context(), window.String())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(edges)
			}
			return writeEdges(e.stdout, edges)
		},
	}
	cmd.Flags().DurationVar(&window, "window", 30*time.Second, "time window of the metrics")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// writeEdges prints the edges as a table, sorted by source and destination.
func writeEdges(w io.Writer, edges *ctlapi.Edges) error {
	rows := slices.Clone(edges.Edges)
	if len(rows) == 0 {
		fmt.Fprintf(w, "No traffic between services in the last %s.\n", edges.Window)
		return nil
	}
	slices.SortFunc(rows, func(a, b ctlapi.EdgeStat) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tSUCCESS\tRPS")
	for _, e := range rows {
		success := "-"
		if e.SuccessRate != nil {
			success = fmt.Sprintf("%.2f%%", 100**e.SuccessRate)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1frps\n", e.From, e.To, success, e.RPS)
	}
	return tw.Flush()
}
