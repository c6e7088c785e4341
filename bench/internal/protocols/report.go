package protocols

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteMarkdown writes the run as tables: the paced request/response windows with latency added
// over direct and each pair's cost, the bulk transfers, and the pairs not run with the reason.
// Every peer row carries Weft's (mTLS pair's) figure divided by the peer's for the same
// protocol: above 1 means Weft is slower or costs more.
func WriteMarkdown(w io.Writer, r *Result) error {
	direct := map[string]*Window{}
	weft := map[string]*Window{}
	for _, x := range r.Windows {
		switch x.Peer {
		case Direct:
			direct[x.Protocol] = x
		case WeftMTLS:
			weft[x.Protocol] = x
		}
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	ratio := func(num, den float64) string {
		if den <= 0 || num <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", num/den)
	}
	var b strings.Builder
	b.WriteString("| protocol | path | rate (achieved) | errors | p50 / p90 / p99 (ms) | added p50 / p90 / p99 over direct (ms) | vCPU per proxy per 1,000 rps: mean (A / B) | VmRSS A / B (MiB) | Weft ÷ this: CPU | Weft ÷ this: added p99 |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Windows {
		if x.Protocol == TCPBulk {
			continue
		}
		added, cpu, rss, rcpu, rp99 := "—", "—", "—", "—", "—"
		d := direct[x.Protocol]
		if d != nil && x.Peer != Direct {
			added = fmt.Sprintf("%+.3f / %+.3f / %+.3f", x.P50-d.P50, x.P90-d.P90, x.P99-d.P99)
		}
		if x.Peer != Direct && x.Achieved > 0 {
			cpu = fmt.Sprintf("%.3f (%.3f / %.3f)", x.cpuPer1k(), x.cpuPer(x.CPUA), x.cpuPer(x.CPUB))
			rss = fmt.Sprintf("%.1f / %.1f", mib(x.RSSA), mib(x.RSSB))
			if wf := weft[x.Protocol]; wf != nil && !strings.HasPrefix(x.Peer, "weft") {
				rcpu = ratio(wf.cpuPer1k(), x.cpuPer1k())
				if d != nil {
					rp99 = ratio(wf.P99-d.P99, x.P99-d.P99)
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f (%.0f) | %d | %.3f / %.3f / %.3f | %s | %s | %s | %s | %s |\n",
			x.Protocol, x.Peer, x.Rate, x.Achieved, x.Errors+x.BadBodies, x.P50, x.P90, x.P99, added, cpu, rss, rcpu, rp99)
	}
	b.WriteString("\n| TCP bulk, one connection, echoed | MB/s each way | seconds | vCPU-s per proxy per GB echoed: mean (A / B) | VmRSS A / B (MiB) | Weft ÷ this: MB/s | Weft ÷ this: CPU per GB | errors |\n|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Windows {
		if x.Protocol != TCPBulk {
			continue
		}
		cpu, rss, rmb, rcpu := "—", "—", "—", "—"
		if x.Peer != Direct {
			cpu = fmt.Sprintf("%.2f (%.2f / %.2f)", x.cpuPerGB(), x.perGB(x.CPUA), x.perGB(x.CPUB))
			rss = fmt.Sprintf("%.1f / %.1f", mib(x.RSSA), mib(x.RSSB))
			if wf := weft[TCPBulk]; wf != nil && !strings.HasPrefix(x.Peer, "weft") {
				rmb, rcpu = ratio(wf.MBps, x.MBps), ratio(wf.cpuPerGB(), x.cpuPerGB())
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %s | %s | %s | %s | %d |\n", x.Peer, x.MBps, x.Seconds, cpu, rss, rmb, rcpu, x.Errors+x.BadBodies)
	}
	if len(r.Skipped) > 0 {
		b.WriteString("\n| protocol | pair not run | why |\n|---|---|---|\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "| %s | %s | %s: %s |\n", s.Protocol, s.Peer, s.Why, strings.ReplaceAll(s.Reason, "|", "\\|"))
		}
	}
	if len(r.Versions) > 0 {
		b.WriteString("\nVersions:")
		names := make([]string, 0, len(r.Versions))
		for n := range r.Versions {
			names = append(names, n)
		}
		slices.Sort(names)
		for i, n := range names {
			sep := ";"
			if i == len(names)-1 {
				sep = "."
			}
			fmt.Fprintf(&b, " %s: %s%s", n, r.Versions[n], sep)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cpuPer is c CPU seconds per second of the window per 1,000 achieved rps.
func (x *Window) cpuPer(c float64) float64 {
	if x.Seconds <= 0 || x.Achieved <= 0 {
		return 0
	}
	return c / x.Seconds / (x.Achieved / 1000)
}

// cpuPer1k is the mean of A's and B's CPU per 1,000 rps.
func (x *Window) cpuPer1k() float64 { return x.cpuPer((x.CPUA + x.CPUB) / 2) }

// perGB is c CPU seconds per 10^9 bytes echoed.
func (x *Window) perGB(c float64) float64 {
	if x.BytesReceived <= 0 {
		return 0
	}
	return c / (float64(x.BytesReceived) / 1e9)
}

// cpuPerGB is the mean of A's and B's CPU per GB echoed.
func (x *Window) cpuPerGB() float64 { return x.perGB((x.CPUA + x.CPUB) / 2) }
