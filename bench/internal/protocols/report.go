package protocols

import (
	"fmt"
	"io"
)

// WriteMarkdown writes two tables: the paced request/response windows with latency added over
// direct, and the bulk transfers.
func WriteMarkdown(w io.Writer, ws []*Window) error {
	direct := map[string]*Window{}
	for _, x := range ws {
		if x.Peer == Direct {
			direct[x.Protocol] = x
		}
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	if _, err := fmt.Fprintln(w, "| protocol | path | rate (achieved) | requests | errors | p50 / p90 / p99 / p99.9 (ms) | added p50 / p99 over direct (ms) | CPU per proxy per 1,000 rps A / B (vCPU) | VmRSS A / B (MiB) |\n|---|---|---|---|---|---|---|---|---|"); err != nil {
		return err
	}
	for _, x := range ws {
		if x.Protocol == TCPBulk {
			continue
		}
		added, cpu, rss := "—", "—", "—"
		if d := direct[x.Protocol]; d != nil && x.Peer != Direct {
			added = fmt.Sprintf("%+.3f / %+.3f", x.P50-d.P50, x.P99-d.P99)
		}
		if x.Peer != Direct && x.Achieved > 0 {
			per := func(c float64) float64 { return c / x.Seconds / (x.Achieved / 1000) }
			cpu = fmt.Sprintf("%.3f / %.3f", per(x.CPUA), per(x.CPUB))
			rss = fmt.Sprintf("%.1f / %.1f", mib(x.RSSA), mib(x.RSSB))
		}
		if _, err := fmt.Fprintf(w, "| %s | %s | %.0f (%.0f) | %d | %d | %.3f / %.3f / %.3f / %.3f | %s | %s | %s |\n",
			x.Protocol, x.Peer, x.Rate, x.Achieved, x.Requests, x.Errors, x.P50, x.P90, x.P99, x.P999, added, cpu, rss); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(w, "\n| TCP bulk, one connection, echoed | bytes each way | MB/s each way | seconds | CPU seconds A / B | VmRSS A / B (MiB) | errors |\n|---|---|---|---|---|---|---|"); err != nil {
		return err
	}
	for _, x := range ws {
		if x.Protocol != TCPBulk {
			continue
		}
		cpu, rss := "—", "—"
		if x.Peer != Direct {
			cpu = fmt.Sprintf("%.2f / %.2f", x.CPUA, x.CPUB)
			rss = fmt.Sprintf("%.1f / %.1f", mib(x.RSSA), mib(x.RSSB))
		}
		if _, err := fmt.Fprintf(w, "| %s | %d | %.0f | %.2f | %s | %s | %d |\n", x.Peer, x.BytesReceived, x.MBps, x.Seconds, cpu, rss, x.Errors); err != nil {
			return err
		}
	}
	return nil
}
