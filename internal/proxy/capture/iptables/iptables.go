// Package iptables programs the transparent capture of `weft-proxy init`:
// in the nat table of the current network namespace, chains of Weft's own
// (WEFT_PREROUTING, WEFT_OUTPUT) that redirect the pod's TCP traffic to
// the proxy, jumped to from PREROUTING and OUTPUT.
//
//   - Inbound (WEFT_PREROUTING): TCP to a skipped port returns; every
//     other TCP connection is redirected to the proxy's inbound port.
//   - Outbound (WEFT_OUTPUT): the proxy's own traffic (its uid), traffic
//     leaving by the loopback interface or to 127.0.0.0/8, skipped
//     destination ports and skipped networks return; every other TCP
//     connection is redirected to the proxy's outbound port.
//
// Rules are installed with one `iptables-restore --noflush` after reading
// `iptables-save -t nat`: Weft's chains are flushed and refilled and the
// jumps are added only when missing, so running it twice leaves one copy,
// and other rules of the table are never touched. Cleanup removes the
// jumps and the chains. IPv4 only: IPv6 traffic is not captured.
//
// Only cmd/weft-proxy imports iptables. Its functions are safe for
// concurrent use, though concurrent runs against one namespace race in
// iptables itself.
package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"weft.dev/weft/internal/proxy/capture/ports"
)

// Chains Weft owns in the nat table.
const (
	ChainPrerouting = "WEFT_PREROUTING"
	ChainOutput     = "WEFT_OUTPUT"
)

// Config is what `weft-proxy init` redirects.
type Config struct {
	// ProxyUID is the proxy's user: its connections are never captured.
	ProxyUID int
	// InboundPort and OutboundPort are the proxy's capture listeners.
	InboundPort, OutboundPort uint16
	// SkipInboundPorts are destination ports of incoming connections that
	// bypass the proxy (the admin port for the kubelet's probes).
	SkipInboundPorts ports.List
	// SkipOutboundPorts are destination ports the workload reaches
	// without the proxy.
	SkipOutboundPorts ports.List
	// SkipOutboundCIDRs are destination networks the workload reaches
	// without the proxy. IPv6 networks are accepted and have no effect
	// (IPv6 is not captured).
	SkipOutboundCIDRs []netip.Prefix
}

// Validate checks cfg, naming the flag at fault.
func (c Config) Validate() error {
	var errs []error
	if c.ProxyUID < 0 {
		errs = append(errs, fmt.Errorf("--proxy-uid %d: must not be negative", c.ProxyUID))
	}
	if c.InboundPort == 0 {
		errs = append(errs, errors.New("--inbound-port is required: the proxy's inbound capture port, e.g. 4143"))
	}
	if c.OutboundPort == 0 {
		errs = append(errs, errors.New("--outbound-port is required: the proxy's outbound capture port, e.g. 4140"))
	}
	if c.InboundPort != 0 && c.InboundPort == c.OutboundPort {
		errs = append(errs, fmt.Errorf("--inbound-port and --outbound-port are both %d; give two ports", c.InboundPort))
	}
	if c.SkipInboundPorts.Contains(c.InboundPort) {
		errs = append(errs, fmt.Errorf("--skip-inbound-ports %s contains the inbound port %d", c.SkipInboundPorts, c.InboundPort))
	}
	return errors.Join(errs...)
}

// ParseCIDRs reads a comma-separated list of networks, e.g.
// "10.0.0.0/8,fd00::/8"; flag names the flag in errors.
func ParseCIDRs(flag, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		p, err := netip.ParsePrefix(item)
		if err != nil {
			if a, aerr := netip.ParseAddr(item); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fmt.Errorf("%s: %q is not a network (want CIDRs such as 10.0.0.0/8, separated by commas)", flag, item)
			}
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// chains returns the rules of Weft's chains, in iptables-restore syntax.
func (c Config) chains() []string {
	var r []string
	add := func(format string, args ...any) { r = append(r, fmt.Sprintf(format, args...)) }
	for _, p := range c.SkipInboundPorts {
		add("-A %s -p tcp --dport %s -j RETURN", ChainPrerouting, portArg(p))
	}
	add("-A %s -p tcp -j REDIRECT --to-ports %d", ChainPrerouting, c.InboundPort)

	add("-A %s -m owner --uid-owner %d -j RETURN", ChainOutput, c.ProxyUID)
	add("-A %s -o lo -j RETURN", ChainOutput)
	add("-A %s -d 127.0.0.0/8 -j RETURN", ChainOutput)
	for _, p := range c.SkipOutboundPorts {
		add("-A %s -p tcp --dport %s -j RETURN", ChainOutput, portArg(p))
	}
	for _, p := range c.SkipOutboundCIDRs {
		if p.Addr().Is4() {
			add("-A %s -d %s -j RETURN", ChainOutput, p)
		}
	}
	add("-A %s -p tcp -j REDIRECT --to-ports %d", ChainOutput, c.OutboundPort)
	return r
}

func portArg(p ports.Range) string {
	if p.From == p.To {
		return strconv.Itoa(int(p.From))
	}
	return strconv.Itoa(int(p.From)) + ":" + strconv.Itoa(int(p.To))
}

// jumps are the rules of the built-in chains that enter Weft's chains.
var jumps = []struct{ chain, rule string }{
	{"PREROUTING", "-A PREROUTING -p tcp -j " + ChainPrerouting},
	{"OUTPUT", "-A OUTPUT -p tcp -j " + ChainOutput},
}

// state is what `iptables-save -t nat` shows of Weft's rules.
type state struct {
	chains map[string]bool // Weft's chains that exist
	jumps  map[string]int  // occurrences of each jump rule
}

func parseSave(saved string) state {
	st := state{chains: map[string]bool{}, jumps: map[string]int{}}
	for line := range strings.SplitSeq(saved, "\n") {
		line = strings.Join(strings.Fields(line), " ")
		for _, ch := range []string{ChainPrerouting, ChainOutput} {
			if strings.HasPrefix(line, ":"+ch+" ") || line == ":"+ch {
				st.chains[ch] = true
			}
		}
		for _, j := range jumps {
			if line == j.rule {
				st.jumps[j.rule]++
			}
		}
	}
	return st
}

// Install returns the iptables-restore --noflush input that brings the nat
// table, as saved shows it, to cfg: Weft's chains flushed and refilled,
// each jump present exactly once.
func Install(saved string, cfg Config) string {
	st := parseSave(saved)
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, ch := range []string{ChainPrerouting, ChainOutput} {
		fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
		fmt.Fprintf(&b, "-F %s\n", ch)
	}
	for _, r := range cfg.chains() {
		b.WriteString(r + "\n")
	}
	for _, j := range jumps {
		n := st.jumps[j.rule]
		for range max(n-1, 0) {
			b.WriteString("-D" + strings.TrimPrefix(j.rule, "-A") + "\n")
		}
		if n == 0 {
			b.WriteString(j.rule + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Cleanup returns the iptables-restore --noflush input that removes
// Weft's jumps and chains from the nat table as saved shows it, or "" when
// there is nothing to remove.
func Cleanup(saved string) string {
	st := parseSave(saved)
	var b strings.Builder
	for _, j := range jumps {
		for range st.jumps[j.rule] {
			b.WriteString("-D" + strings.TrimPrefix(j.rule, "-A") + "\n")
		}
	}
	for _, ch := range []string{ChainPrerouting, ChainOutput} {
		if st.chains[ch] {
			fmt.Fprintf(&b, "-F %s\n-X %s\n", ch, ch)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "*nat\n" + b.String() + "COMMIT\n"
}

// Runner runs iptables-save and iptables-restore.
type Runner struct {
	save, restore []string // command and leading arguments
}

// FindRunner looks up iptables-save and iptables-restore in PATH, else
// xtables-nft-multi (which the proxy image carries under every name).
func FindRunner() (*Runner, error) {
	save, err1 := exec.LookPath("iptables-save")
	restore, err2 := exec.LookPath("iptables-restore")
	if err1 == nil && err2 == nil {
		return &Runner{save: []string{save}, restore: []string{restore}}, nil
	}
	if multi, err := exec.LookPath("xtables-nft-multi"); err == nil {
		return &Runner{save: []string{multi, "iptables-save"}, restore: []string{multi, "iptables-restore"}}, nil
	}
	return nil, errors.New("iptables-save and iptables-restore (or xtables-nft-multi) are not in PATH; install iptables")
}

// Save returns `iptables-save -t nat`.
func (r *Runner) Save(ctx context.Context) (string, error) {
	args := append(append([]string(nil), r.save[1:]...), "-t", "nat")
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.save[0], args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s (weft-proxy init needs CAP_NET_ADMIN in the pod's network namespace)",
			strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Restore feeds input to `iptables-restore --noflush`.
func (r *Runner) Restore(ctx context.Context, input string) error {
	args := append(append([]string(nil), r.restore[1:]...), "--noflush")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.restore[0], args...)
	cmd.Stdin, cmd.Stderr = strings.NewReader(input), &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s\ninput was:\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()), input)
	}
	return nil
}

// Apply installs cfg in the current network namespace and returns the
// iptables-restore input it used.
func (r *Runner) Apply(ctx context.Context, cfg Config) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	saved, err := r.Save(ctx)
	if err != nil {
		return "", err
	}
	in := Install(saved, cfg)
	return in, r.Restore(ctx, in)
}

// Reset removes Weft's rules from the current network namespace and
// returns the iptables-restore input it used ("" when there were none).
func (r *Runner) Reset(ctx context.Context) (string, error) {
	saved, err := r.Save(ctx)
	if err != nil {
		return "", err
	}
	in := Cleanup(saved)
	if in == "" {
		return "", nil
	}
	return in, r.Restore(ctx, in)
}
