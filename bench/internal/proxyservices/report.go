package proxyservices

import (
	"fmt"
	"io"
)

// TargetRSS is the goal for the proxy's VmRSS with a 1,000-service configuration: 20 MB.
const TargetRSS = 20_000_000

// WriteMarkdown writes r as markdown: a table of the phases and a summary.
func WriteMarkdown(w io.Writer, r *Result) error {
	mib := func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	both := func(b uint64) string { return fmt.Sprintf("%.1f (%.1f MB)", float64(b)/(1<<20), float64(b)/1e6) }
	_, err := fmt.Fprintf(w, "weft-proxy in a mesh of %d services, reached by transparent capture (%s, GOMAXPROCS=%d, %s)\n\n",
		r.Services, r.Proxy, r.GOMAXPROCS, r.GoVersion)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "| phase | services called | VmRSS MiB (MB) | VmHWM MiB (MB) | RssAnon / RssFile MiB | Go heap / stacks / sys MiB | goroutines | /metrics KB | step wall s |\n|---|---|---|---|---|---|---|---|---|"); err != nil {
		return err
	}
	for _, p := range r.Phases {
		if _, err := fmt.Fprintf(w, "| %s | %d | %s | %s | %s / %s | %s / %s / %s | %d | %.0f | %.1f |\n",
			p.Name, p.Called, both(p.RSS), both(p.HWM), mib(p.RssAnon), mib(p.RssFile),
			mib(p.GoHeap), mib(p.GoStacks), mib(p.GoSys), p.Goroutines, float64(p.MetricsBytes)/1e3, p.Seconds); err != nil {
			return err
		}
	}
	first, last := Phase{}, r.Final()
	if len(r.Phases) > 0 {
		first = r.Phases[0]
	}
	if _, err := fmt.Fprintf(w, "\nRequests %d, errors %d; services whose endpoint got exactly its request: %d of %d; counted once by the proxy: %d of %d.\n",
		r.Requests, r.Errors, r.Reached, r.Services, r.Counted, r.Services); err != nil {
		return err
	}
	if r.FirstError != "" {
		if _, err := fmt.Fprintf(w, "First error: %s\n", r.FirstError); err != nil {
			return err
		}
	}
	if last.Called > 0 {
		per := (float64(last.RSS) - float64(first.RSS)) / float64(last.Called) / 1024
		anon := (float64(last.RssAnon) - float64(first.RssAnon)) / float64(last.Called) / 1024
		if _, err := fmt.Fprintf(w, "Per destination called: %+.1f KiB of VmRSS (%+.1f KiB anonymous) from idle to %d services.\n", per, anon, last.Called); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "VmHWM at the end, after two more /metrics scrapes: %s.\n", both(r.EndHWM)); err != nil {
		return err
	}
	verdict := "met"
	if last.RSS > TargetRSS {
		verdict = fmt.Sprintf("exceeded by %.1f MB", float64(last.RSS-TargetRSS)/1e6)
	}
	if _, err := fmt.Fprintf(w, "Target VmRSS ≤ 20 MB with %d services called: %.1f MB, %s (idle: %.1f MB).\n",
		last.Called, float64(last.RSS)/1e6, verdict, float64(first.RSS)/1e6); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "Controller VmRSS %s MiB. Machine: load average %.2f at the start; other processes used %.2f vCPU on average during the %.0f s run.\n",
		mib(r.ControllerRSS), r.LoadAvg, r.OtherCPU, r.Seconds)
	return err
}
