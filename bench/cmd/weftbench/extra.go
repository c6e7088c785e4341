package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"weft.dev/weft/bench/internal/balance"
	"weft.dev/weft/bench/internal/controlplane"
	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/protocols"
	"weft.dev/weft/bench/internal/proxyservices"
	"weft.dev/weft/bench/internal/report"
	"weft.dev/weft/bench/internal/role"
)

// runControlPlane runs one control-plane scenario per "SERVICESxPROXIES" item of spec and writes
// the table to stdout and, with out set, <time>-controlplane.{json,md} into out.
func runControlPlane(ctx context.Context, spec string, changes int, memLimit, profiles, out string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	started := time.Now().UTC()
	var rs []*controlplane.Result
	for _, item := range strings.Split(spec, ",") {
		s, p, ok := strings.Cut(strings.TrimSpace(item), "x")
		services, err1 := strconv.Atoi(s)
		proxies, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil || services < 2 || proxies < 1 {
			return fmt.Errorf("-controlplane: %q is not SERVICESxPROXIES (e.g. 1000x2000, at least 2 services)", item)
		}
		var dir string
		if profiles != "" {
			dir = filepath.Join(profiles, fmt.Sprintf("%dx%d", services, proxies))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("-cp-profiles: %w", err)
			}
		}
		fmt.Fprintf(os.Stderr, "control plane: %d services, %d simulated proxies, %d route changes\n", services, proxies, changes)
		r, err := controlplane.Run(ctx, controlplane.Config{Self: self, EnvRole: role.EnvRole, Services: services, Proxies: proxies, Changes: changes, MemoryLimit: memLimit, Profiles: dir})
		if err != nil {
			return fmt.Errorf("control plane %s: %w", item, err)
		}
		rs = append(rs, r)
	}
	if err := controlplane.WriteMarkdown(os.Stdout, rs); err != nil {
		return err
	}
	return writeResults(out, started, "controlplane", struct {
		Started time.Time              `json:"started"`
		Results []*controlplane.Result `json:"results"`
	}{started, rs}, func(w io.Writer) error { return controlplane.WriteMarkdown(w, rs) })
}

// runProtocols runs the protocol scenarios (kinds: comma-separated, or "all") with cfg and
// writes the tables to stdout and, with out set, <time>-protocols.{json,md} into out. A run
// stopped early (interrupted, or Weft failing) still prints and writes the windows measured.
func runProtocols(ctx context.Context, cfg protocols.Config, kinds, peers string, verbose bool, out string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	cfg.Self = self
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if kinds != "all" {
		cfg.Kinds = strings.Split(kinds, ",")
	}
	if peers != "" && peers != "all" {
		cfg.Peers = []string{}
		for _, p := range strings.Split(peers, ",") {
			if p = strings.TrimSpace(p); p != "weft" && !strings.HasPrefix(p, "weft ") {
				cfg.Peers = append(cfg.Peers, p) // both Weft pairs always run
			}
		}
	}
	res, runErr := protocols.Run(ctx, cfg)
	defer peer.RemoveBuilds()
	if res == nil || len(res.Windows) == 0 {
		return runErr
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "weftbench: stopped early (%v); the figures below cover the windows measured so far\n", runErr)
	}
	if err := protocols.WriteMarkdown(os.Stdout, res); err != nil {
		return err
	}
	if err := writeResults(out, res.Started, "protocols", res, func(w io.Writer) error { return protocols.WriteMarkdown(w, res) }); err != nil {
		return err
	}
	return runErr
}

// renderFile prints the markdown of a stored results file: an HTTP/1.1 run or a protocol run,
// with or without repetitions.
func renderFile(w io.Writer, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("-render: %w", err)
	}
	var probe struct {
		Scenarios json.RawMessage `json:"scenarios"`
		Windows   []struct {
			Protocol string `json:"protocol"`
		} `json:"windows"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return fmt.Errorf("-render %s: %w", file, err)
	}
	switch {
	case len(probe.Windows) > 0 && probe.Windows[0].Protocol != "":
		res, err := protocols.ReadJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("-render %s: %w", file, err)
		}
		return protocols.WriteMarkdown(w, res)
	case probe.Scenarios != nil:
		rep, err := report.ReadJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("-render %s: %w", file, err)
		}
		return rep.WriteMarkdown(w)
	}
	return fmt.Errorf("-render %s: neither an HTTP/1.1 run (\"scenarios\") nor a protocol run (\"windows\" with a \"protocol\")", file)
}

// writeResults writes v as <out>/<started>-<name>.json and the markdown md writes as .md.
func writeResults(out string, started time.Time, name string, v any, md func(io.Writer) error) error {
	if out == "" {
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create -out directory: %w", err)
	}
	base := filepath.Join(out, started.Format("2006-01-02T150405Z")+"-"+name)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	f, err := os.Create(base + ".md")
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	err = md(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s.md: %w", base, err)
	}
	fmt.Fprintf(os.Stderr, "results written to %s.{json,md}\n", base)
	return nil
}

// runBalance runs the slow-endpoint scenario and writes its table to stdout and, with out set,
// <time>-balance.{json,md} into out.
func runBalance(ctx context.Context, delay time.Duration, rate float64, conns int, d, warmup time.Duration, quick, verbose bool, out string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	cfg := balance.Config{Delay: delay, Rate: rate, Connections: conns, Duration: d, Warmup: warmup, Self: self,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	if quick {
		cfg = balance.Quick(cfg)
	}
	started := time.Now().UTC()
	ws, err := balance.Run(ctx, cfg)
	defer peer.RemoveBuilds()
	if err != nil {
		return err
	}
	if err := balance.WriteMarkdown(os.Stdout, cfg, ws); err != nil {
		return err
	}
	return writeResults(out, started, "balance", struct {
		Started time.Time         `json:"started"`
		Config  balance.Config    `json:"config"`
		Windows []*balance.Window `json:"windows"`
	}{started, cfg, ws}, func(w io.Writer) error { return balance.WriteMarkdown(w, cfg, ws) })
}

// runProxyServices measures one weft-proxy in a mesh of services services and writes the table
// to stdout and, with out set, <time>-proxy-services.{json,md} into out.
func runProxyServices(ctx context.Context, services int, hold time.Duration, verbose bool, out string) error {
	if services < 1 || services > proxyservices.MaxServices {
		return fmt.Errorf("-proxy-services: %d is not from 1 to %d", services, proxyservices.MaxServices)
	}
	if hold < 0 || hold >= 5*time.Minute {
		return fmt.Errorf("-ps-hold: %s is not from 0 to under 5m (the proxy lets a destination go after 5 minutes without a connection)", hold)
	}
	if err := proxyservices.Check(); err != nil {
		return fmt.Errorf("-proxy-services cannot run here: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	fmt.Fprintf(os.Stderr, "proxy in a mesh of %d services: building weft-proxy, then idle, %d and %d services called\n", services, max(services/10, 1), services)
	defer peer.RemoveBuilds()
	bin, err := peer.WeftProxyBinary(ctx)
	if err != nil {
		return err
	}
	res, err := proxyservices.Run(ctx, proxyservices.Config{Self: self, EnvRole: role.EnvRole, Services: services, Hold: hold,
		Proxy: bin, ProxyVersion: peer.Weft{}.Version(ctx),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		return err
	}
	if err := proxyservices.WriteMarkdown(os.Stdout, res); err != nil {
		return err
	}
	if err := writeResults(out, res.Started, "proxy-services", res, func(w io.Writer) error { return proxyservices.WriteMarkdown(w, res) }); err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed (first: %s)", res.Errors, res.Requests, res.FirstError)
	}
	return nil
}
