package controlplane

import (
	"fmt"
	"io"
)

// WriteMarkdown writes the results as a markdown table.
func WriteMarkdown(w io.Writer, rs []*Result) error {
	mib := func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	_, err := fmt.Fprintln(w, "| services | simulated proxies (streams) | controller VmRSS idle (MiB) | VmRSS with proxies (MiB) | VmHWM (MiB) | Go live heap / stacks (MiB), goroutines | connect all: wall s / controller CPU s | controller vCPU, watching, no change | CPU per route change (ms) | route change reaches every proxy p50 / p99 / max (ms) | per proxy arrival p50 / p99 (ms) | changes | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	if err != nil {
		return err
	}
	for _, r := range rs {
		_, err := fmt.Fprintf(w, "| %d | %d (%d) | %s | %s | %s | %s / %s, %d | %.1f / %.2f | %.3f | %.1f | %.1f / %.1f / %.1f | %.1f / %.1f | %d | %d |\n",
			r.Services, r.Proxies, r.Streams, mib(r.IdleRSS), mib(r.RSS), mib(r.HWM),
			mib(r.Runtime.HeapLive), mib(r.Runtime.StackInuse), r.Runtime.Goroutines, r.ConnectSeconds, r.ConnectCPU,
			r.IdleCPU, r.ChangeCPU*1000, r.EveryP50, r.EveryP99, r.EveryMax, r.EachP50, r.EachP99, r.Changes, r.Errors)
		if err != nil {
			return err
		}
	}
	return nil
}
