package cluster

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// sweepIptables removes what the cluster left in iptables and ip6tables: every KUBE-* chain (kube-proxy's
// and the kubelet's canaries), the rules that jump to them, and the bridge plugin's masquerading
// rules and CNI-* chains, found by the comment naming the cluster's network.
func sweepIptables(ctx context.Context, network string) error {
	var errs []error
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			errs = append(errs, sweepTable(ctx, bin, table, network))
		}
	}
	return errors.Join(errs...)
}

func sweepTable(ctx context.Context, bin, table, network string) error {
	out, err := run(ctx, 30*time.Second, bin, "-w", "5", "-t", table, "-S")
	if err != nil {
		// A table this kernel lacks (raw for ip6tables, say) has nothing to sweep.
		return nil
	}
	comment := `name: \"` + network + `\"`
	lines := strings.Split(string(out), "\n")
	doomed := map[string]bool{}
	var order []string
	mark := func(c string) {
		if !doomed[c] {
			doomed[c] = true
			order = append(order, c)
		}
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-") {
			mark(f[1])
		}
		if len(f) >= 2 && f[0] == "-A" && strings.Contains(l, comment) {
			if strings.HasPrefix(f[1], "CNI-") {
				mark(f[1])
			}
			if t := jumpTarget(f); strings.HasPrefix(t, "CNI-") {
				mark(t)
			}
		}
	}
	var errs []error
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "-A" || doomed[f[1]] {
			continue
		}
		if !doomed[jumpTarget(f)] && !strings.Contains(l, comment) {
			continue
		}
		args, err := splitRule(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		args[0] = "-D"
		if _, err := run(ctx, 30*time.Second, bin, append([]string{"-w", "5", "-t", table}, args...)...); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range order {
		if _, err := run(ctx, 30*time.Second, bin, "-w", "5", "-t", table, "-F", c); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range order {
		if _, err := run(ctx, 30*time.Second, bin, "-w", "5", "-t", table, "-X", c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// jumpTarget is the chain a rule jumps or goes to, or "".
func jumpTarget(f []string) string {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

// splitRule splits a line of `iptables -S` into arguments, undoing its double quotes and
// backslash escapes.
func splitRule(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			have = true
		case c == '"':
			inQuote = !inQuote
			have = true
		case c == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("iptables rule with an open quote: %s", line)
	}
	if have {
		args = append(args, cur.String())
	}
	return args, nil
}

// iptablesLeftovers lists the KUBE-* chains and the rules naming the cluster's network that remain.
func iptablesLeftovers(ctx context.Context, network string) []string {
	comment := `name: \"` + network + `\"`
	var out []string
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			b, err := run(ctx, 30*time.Second, bin, "-w", "5", "-t", table, "-S")
			if err != nil {
				continue
			}
			for l := range strings.SplitSeq(string(b), "\n") {
				if strings.Contains(l, "KUBE-") || strings.Contains(l, comment) {
					out = append(out, bin+" -t "+table+": "+l)
				}
			}
		}
	}
	return out
}
