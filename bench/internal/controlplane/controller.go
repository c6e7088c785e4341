// Package controlplane measures weft-controller: its memory and CPU with many services and many
// simulated proxies, and how long a route change (a TrafficSplit weight change) takes to reach
// every watching proxy. The controller runs as a process of its own (the harness re-executes
// itself in the role Role, see ServeController), so its VmRSS and CPU are its own; the
// simulated proxies are gRPC clients in the harness process, each with its own mutual TLS
// connection, watching destinations and their inbound configuration like weft-proxy does.
//
// Only the benchmark harness and its tests import controlplane. Run is safe to call
// concurrently with other work; it starts and stops everything it uses.
package controlplane

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/controller"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/control/split"
)

// Role is the name under which the harness re-executes itself as the controller.
const Role = "controller"

// Environment of the controller role.
const (
	EnvServices = "WEFTBENCH_SERVICES" // number of services in the store
	EnvDir      = "WEFTBENCH_CP_DIR"   // directory holding the issuer files written by Run
	// EnvProfiles, when set, is a directory the role writes heap.pprof and goroutine.pprof
	// into on every "stats" command (weftbench -cp-profiles).
	EnvProfiles = "WEFTBENCH_CP_PROFILES"
)

// Stats is the controller process's Go runtime state, as the role reports it on "stats".
type Stats struct {
	// Goroutines is runtime.NumGoroutine.
	Goroutines int `json:"goroutines"`
	// HeapLive is HeapAlloc right after a forced collection: the live heap.
	HeapLive uint64 `json:"heap_live"`
	// StackInuse is the memory of goroutine stacks; Sys all memory the runtime obtained.
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	// NextGC is the heap goal before the forced collection.
	NextGC uint64 `json:"next_gc"`
}

// readStats reads the process's Stats and, with dir set, writes its heap and goroutine
// profiles into dir.
func readStats(dir string) (Stats, error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := Stats{Goroutines: runtime.NumGoroutine(), NextGC: ms.NextGC, StackInuse: ms.StackInuse, Sys: ms.Sys}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	st.HeapLive = ms.HeapAlloc
	if dir == "" {
		return st, nil
	}
	for _, name := range []string{"heap", "goroutine"} {
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			return st, err
		}
		err = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return st, fmt.Errorf("write %s profile: %w", name, err)
		}
	}
	return st, nil
}

// Files in the role's directory.
const (
	anchorsFile    = "anchors.pem"
	issuerCertFile = "issuer.pem"
	issuerKeyFile  = "issuer-key.pem"
)

// RootService is the service every simulated proxy watches and whose TrafficSplit changes.
const RootService = "svc-0"

// ServiceName is the name of the i-th service in the store.
func ServiceName(i int) string { return "svc-" + strconv.Itoa(i) }

// ServeController runs the controller role: a controller on 127.0.0.1:0 whose memory store holds
// the services EnvServices names (three endpoints each, plus two versions of RootService under
// a TrafficSplit), signing with the issuer in EnvDir. It prints "ready ADDR" with its gRPC
// address on out once it serves, then reads one weight (0..100) per line from in, applies the
// TrafficSplit with that weight for RootService's v1 backend, and prints "applied" (or
// "error: ...") per line. The line "stats" is answered with "stats " and the JSON of Stats.
// It returns when ctx ends or in closes. Like weft-controller, it sets the garbage
// collector's target to controller.GCPercent unless $GOGC is set.
func ServeController(ctx context.Context, in io.Reader, out io.Writer) error {
	controller.SetGCPercent() // as weft-controller does
	n, err := strconv.Atoi(os.Getenv(EnvServices))
	if err != nil || n < 1 {
		return fmt.Errorf("$%s: want a positive number, got %q", EnvServices, os.Getenv(EnvServices))
	}
	dir := os.Getenv(EnvDir)
	issuer, err := identity.LoadIssuerFiles(filepath.Join(dir, anchorsFile), filepath.Join(dir, issuerCertFile), filepath.Join(dir, issuerKeyFile))
	if err != nil {
		return err
	}
	store := memory.New(config.DefaultTrustDomain)
	add := func(name string, i int) {
		var eps []config.Endpoint
		for j := range 3 {
			eps = append(eps, config.Endpoint{
				Address:  fmt.Sprintf("10.%d.%d.%d:8080", (i>>8)&0xff, i&0xff, j+1),
				Identity: config.SpiffeID("", config.DefaultNamespace, name), Meshed: true, Ready: true,
			})
		}
		store.SetService(config.Service{Name: name, Namespace: config.DefaultNamespace, Protocol: config.ProtocolHTTP1, Endpoints: eps})
	}
	for i := range n {
		add(ServiceName(i), i)
	}
	add(RootService+"-v1", n)
	add(RootService+"-v2", n+1)
	apply := func(w uint32) error {
		_, err := store.Apply([]config.Resource{{
			APIVersion: split.Group + "/v1alpha4", Kind: split.Kind, Name: "bench", Namespace: config.DefaultNamespace,
			Spec: &split.TrafficSplit{Service: RootService, Backends: []split.Backend{
				{Service: RootService + "-v1", Weight: w}, {Service: RootService + "-v2", Weight: 100 - w},
			}},
		}})
		return err
	}
	if err := apply(50); err != nil {
		return fmt.Errorf("initial TrafficSplit: %w", err)
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	ctl, err := controller.New(controller.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: hex.EncodeToString(tok), Store: store,
		Logger: slog.New(slog.DiscardHandler), ScrapeInterval: time.Hour, Issuer: issuer,
	})
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	select {
	case <-ctl.Ready():
	case err := <-done:
		return fmt.Errorf("controller: %w", err)
	}
	fmt.Fprintf(out, "ready %s\n", ctl.GRPCAddr())
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case err := <-done:
			return err
		case line, ok := <-lines:
			if !ok {
				cancel()
				<-done
				return nil
			}
			if strings.TrimSpace(line) == "stats" {
				st, err := readStats(os.Getenv(EnvProfiles))
				if err != nil {
					fmt.Fprintf(out, "error: %v\n", err)
					continue
				}
				b, _ := json.Marshal(st)
				fmt.Fprintf(out, "stats %s\n", b)
				continue
			}
			w, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
			if err == nil && w > 100 {
				err = fmt.Errorf("weight %d above 100", w)
			}
			if err == nil {
				err = apply(uint32(w))
			}
			if err != nil {
				fmt.Fprintf(out, "error: %v\n", err)
				continue
			}
			fmt.Fprintln(out, "applied")
		}
	}
}
