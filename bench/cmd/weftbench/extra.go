package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"weft.dev/weft/bench/internal/controlplane"
	"weft.dev/weft/bench/internal/role"
)

// runControlPlane runs one control-plane scenario per "SERVICESxPROXIES" item of spec and writes
// the table to stdout and, with out set, <time>-controlplane.{json,md} into out.
func runControlPlane(ctx context.Context, spec string, changes int, out string) error {
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
		fmt.Fprintf(os.Stderr, "control plane: %d services, %d simulated proxies, %d route changes\n", services, proxies, changes)
		r, err := controlplane.Run(ctx, controlplane.Config{Self: self, EnvRole: role.EnvRole, Services: services, Proxies: proxies, Changes: changes})
		if err != nil {
			return fmt.Errorf("control plane %s: %w", item, err)
		}
		rs = append(rs, r)
	}
	if err := controlplane.WriteMarkdown(os.Stdout, rs); err != nil {
		return err
	}
	if out == "" {
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create -out directory: %w", err)
	}
	base := filepath.Join(out, started.Format("2006-01-02T150405Z")+"-controlplane")
	b, err := json.MarshalIndent(struct {
		Started time.Time              `json:"started"`
		Results []*controlplane.Result `json:"results"`
	}{started, rs}, "", "  ")
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
	err = controlplane.WriteMarkdown(f, rs)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "results written to %s.{json,md}\n", base)
	return nil
}
