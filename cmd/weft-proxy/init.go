package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"

	"weft.dev/weft/internal/proxy/capture/iptables"
	"weft.dev/weft/internal/proxy/capture/ports"
)

// initCommand is `weft-proxy init`: it installs (or with --cleanup
// removes) the iptables redirection of the current network namespace and
// exits. It runs as root with CAP_NET_ADMIN (the injector's init container).
func initCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-proxy init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uid := fs.Int("proxy-uid", 2102, "user id the proxy runs as; its own connections are never redirected")
	inPort := fs.Int("inbound-port", 4143, "the proxy's inbound capture port (--inbound-capture)")
	outPort := fs.Int("outbound-port", 4140, "the proxy's outbound capture port (--outbound-capture)")
	skipIn := fs.String("skip-inbound-ports", "", "incoming destination ports that bypass the proxy, e.g. 4191,9090-9092")
	skipOut := fs.String("skip-outbound-ports", "", "outgoing destination ports that bypass the proxy, e.g. 3306,5432")
	skipCIDRs := fs.String("skip-outbound-cidrs", "", "outgoing destination networks that bypass the proxy, e.g. 10.0.0.0/8 (IPv4; IPv6 is not captured)")
	dryRun := fs.Bool("dry-run", false, "print the iptables-restore input instead of applying it")
	cleanup := fs.Bool("cleanup", false, "remove Weft's chains and jumps instead of installing them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("init: unexpected argument %q (all options are flags)", fs.Arg(0))
	}
	port := func(name string, v int) (uint16, error) {
		if v < 1 || v > math.MaxUint16 {
			return 0, fmt.Errorf("--%s %d: not a port (1-65535)", name, v)
		}
		return uint16(v), nil
	}
	var cfg iptables.Config
	var err error
	cfg.ProxyUID = *uid
	if cfg.InboundPort, err = port("inbound-port", *inPort); err != nil {
		return err
	}
	if cfg.OutboundPort, err = port("outbound-port", *outPort); err != nil {
		return err
	}
	if cfg.SkipInboundPorts, err = ports.Parse("--skip-inbound-ports", *skipIn); err != nil {
		return err
	}
	if cfg.SkipOutboundPorts, err = ports.Parse("--skip-outbound-ports", *skipOut); err != nil {
		return err
	}
	if cfg.SkipOutboundCIDRs, err = iptables.ParseCIDRs("--skip-outbound-cidrs", *skipCIDRs); err != nil {
		return err
	}
	if !*cleanup {
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	if *dryRun {
		if *cleanup {
			fmt.Fprint(stdout, iptables.Cleanup(saveOrEmpty(ctx)))
			return nil
		}
		fmt.Fprint(stdout, iptables.Install(saveOrEmpty(ctx), cfg))
		return nil
	}
	r, err := iptables.FindRunner()
	if err != nil {
		return &runError{err}
	}
	var in string
	if *cleanup {
		in, err = r.Reset(ctx)
	} else {
		in, err = r.Apply(ctx, cfg)
	}
	if err != nil {
		return &runError{err}
	}
	if in == "" {
		fmt.Fprintln(stdout, "weft-proxy init: no rules of Weft to remove")
		return nil
	}
	fmt.Fprintf(stdout, "weft-proxy init: applied with iptables-restore --noflush:\n%s", in)
	return nil
}

// saveOrEmpty returns the nat table when it can be read (a dry run
// without privileges shows the rules of an empty table).
func saveOrEmpty(ctx context.Context) string {
	r, err := iptables.FindRunner()
	if err != nil {
		return ""
	}
	saved, err := r.Save(ctx)
	if err != nil {
		return ""
	}
	return saved
}

// runError is a failure of the system, not of the command line: exit 1.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }
