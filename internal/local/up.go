package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/local/statedir"
)

// Defaults of Options.
const (
	DefaultHTTPAddr     = "127.0.0.1:8085"
	DefaultGRPCAddr     = "127.0.0.1:8086"
	DefaultReadyTimeout = 60 * time.Second
	demoMeshFile        = "examples/demo/mesh.yaml"
)

// Options configure Up.
type Options struct {
	// MeshFile declares the workloads; "" runs the demo from the source tree.
	MeshFile string
	// StateDir holds the lock, controller.json, logs/ and bin/; "" means
	// statedir.Default().
	StateDir string
	// HTTPAddr and GRPCAddr of the embedded controller; "" means
	// DefaultHTTPAddr and DefaultGRPCAddr.
	HTTPAddr, GRPCAddr string
	// ReadyTimeout bounds the wait for every child to be ready; 0 means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// WorkDir is where the source tree is looked for; "" means the current
	// directory.
	WorkDir string
	// Executable is the path of the running weft; "" means os.Executable().
	Executable string
	// Out receives what the user reads; nil means os.Stdout.
	Out io.Writer
	// Logger receives the detailed log; nil means a log file in the state
	// directory's logs/weft-up.log.
	Logger *slog.Logger
	// ProxyLogLevel is passed to every proxy; "" leaves their default.
	ProxyLogLevel string
	// Identity are the user's trust anchor and issuer; zero generates them
	// into the state directory (identity/).
	Identity IdentityFiles
	// Timing of the supervisor; zero fields mean defaults.
	Timing Timing
}

// Up runs a local mesh until ctx ends: it takes the state directory's lock,
// builds what is missing, starts the embedded controller, every workload
// with its proxy and an ingress proxy per exposed service, waits until all
// are ready, prints where to reach them, and supervises them. When ctx ends
// it stops everything and returns nil.
func Up(ctx context.Context, o Options) (err error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.GRPCAddr == "" {
		o.GRPCAddr = DefaultGRPCAddr
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.StateDir == "" {
		if o.StateDir, err = statedir.Default(); err != nil {
			return err
		}
	}
	if o.StateDir, err = filepath.Abs(o.StateDir); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if o.WorkDir == "" {
		if o.WorkDir, err = os.Getwd(); err != nil {
			return fmt.Errorf("current directory: %w", err)
		}
	}
	if o.Executable == "" {
		o.Executable, _ = os.Executable()
	}

	lock, err := statedir.Acquire(o.StateDir)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := lock.Release(); err == nil && rerr != nil {
			err = rerr
		}
	}()

	root := FindModuleRoot(o.WorkDir)
	meshPath := o.MeshFile
	demo := meshPath == ""
	if demo {
		if root == "" {
			_, err := findBinaries(o.Executable, "", statedir.Bin(o.StateDir), true)
			return err
		}
		meshPath = filepath.Join(root, demoMeshFile)
	}
	data, err := os.ReadFile(meshPath)
	if err != nil {
		return fmt.Errorf("read mesh file: %w", err)
	}
	mesh, resources, err := loadMesh(meshPath, data)
	if err != nil {
		return err
	}
	needsBin := demo || (root != "" && strings.Contains(string(data), "WEFT_BIN"))
	bins, err := findBinaries(o.Executable, root, statedir.Bin(o.StateDir), needsBin)
	if err != nil {
		return err
	}

	if err := checkPorts(fixedPorts(mesh, o)); err != nil {
		return err
	}
	if err := bins.buildAll(ctx, o.Out); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while building
		}
		return err
	}

	log := o.Logger
	if log == nil {
		f, err := os.OpenFile(filepath.Join(statedir.Logs(o.StateDir), "weft-up.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open log file: %w", err)
		}
		defer f.Close()
		log = slog.New(slog.NewTextHandler(f, nil))
	}

	token, err := newToken()
	if err != nil {
		return err
	}
	mi, err := loadIdentity(o.StateDir, o.Identity, config.DefaultTrustDomain)
	if err != nil {
		return err
	}
	store := memory.New(config.DefaultTrustDomain)
	ctrl, err := newControlPlane(controlConfig{
		GRPCAddr: o.GRPCAddr, HTTPAddr: o.HTTPAddr, Token: token, Store: store,
		Logger: log.With("component", "controller"), Issuer: mi.issuer, Tokens: mi.tokens,
	})
	if err != nil {
		return fmt.Errorf("embedded controller: %w", err)
	}
	ctrlCtx, stopCtrl := context.WithCancel(context.WithoutCancel(ctx))
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- ctrl.Run(ctrlCtx) }()
	defer func() {
		stopCtrl()
		if cerr := <-ctrlDone; err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("embedded controller: %w", cerr)
		}
	}()
	select {
	case <-ctrl.Ready():
	case cerr := <-ctrlDone:
		ctrlDone <- cerr // for the deferred wait
		return fmt.Errorf("embedded controller: %w", cerr)
	case <-ctx.Done():
		return nil
	}

	if err := statedir.WriteController(o.StateDir, statedir.Controller{
		HTTPAddr: ctrl.HTTPAddr(), GRPCAddr: ctrl.GRPCAddr(), Token: token, PID: os.Getpid(),
	}); err != nil {
		return err
	}
	defer func() {
		if rerr := statedir.RemoveController(o.StateDir); err == nil && rerr != nil {
			err = rerr
		}
	}()

	ports := newFreePorts(reservedPorts(mesh)...)
	p, err := buildPlan(mesh, planEnv{
		ProxyBin: bins.Proxy, BinDir: bins.BinDir, LogDir: statedir.Logs(o.StateDir),
		ControllerGRPC: ctrl.GRPCAddr(), TrustDomain: config.DefaultTrustDomain, Identity: mi,
		LogLevel: o.ProxyLogLevel, Environ: os.Environ(), FreePort: ports.next,
	})
	if err != nil {
		return err
	}
	if err := checkCommands(p); err != nil {
		return err
	}
	register(store, p)
	// The documents of the mesh file, then those applied in the last run
	// that still fit and that the mesh file does not name.
	if len(resources) > 0 {
		if _, err := store.Apply(resources); err != nil {
			return fmt.Errorf("apply the documents of %s: %w", meshPath, err)
		}
	}
	appliedPath := filepath.Join(o.StateDir, appliedFile)
	restored := restoreResources(appliedPath, store, func(msg string) { fmt.Fprintln(o.Out, "warning: "+msg) })
	persistCtx, stopPersist := context.WithCancel(context.WithoutCancel(ctx))
	persistDone := make(chan struct{})
	go func() { persistResources(persistCtx, appliedPath, store, log); close(persistDone) }()
	defer func() { stopPersist(); <-persistDone }()

	sup := newSupervisor(p, store, log.With("component", "supervisor"), o.Out, o.Timing)
	supCtx, stopSup := context.WithCancel(ctx)
	supDone := make(chan struct{})
	go func() { _ = sup.Run(supCtx); close(supDone) }()
	defer func() { stopSup(); <-supDone }()

	timer := time.NewTimer(o.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-sup.Ready():
	case <-ctx.Done():
		return nil
	case <-timer.C:
		return sup.notReadyError(o.ReadyTimeout)
	}

	if restored > 0 {
		fmt.Fprintf(o.Out, "re-applied %d document(s) of the last run from %s (weft get lists them, weft delete removes them)\n", restored, appliedPath)
	}
	printReady(o.Out, mesh, ctrl.HTTPAddr(), o.StateDir)
	<-ctx.Done()
	fmt.Fprintln(o.Out, "stopping…")
	return nil
}

// register tells the store every service and proxy of the plan.
func register(reg Registry, p *plan) {
	for _, s := range p.services {
		reg.SetService(s)
	}
	for _, px := range p.proxies {
		reg.SetProxy(px)
	}
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate API token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// fixedPorts lists the ports the user chose, to check before starting.
func fixedPorts(m *Mesh, o Options) []portUse {
	uses := []portUse{
		{addr: o.HTTPAddr, what: "controller HTTP API", fix: "pass --http-addr with another address"},
		{addr: o.GRPCAddr, what: "controller gRPC", fix: "pass --grpc-addr with another address"},
	}
	for i, e := range m.Expose {
		uses = append(uses, portUse{
			addr: loopback(e.Port), what: "expose " + e.Service,
			fix: fmt.Sprintf("change spec.expose[%d].port in %s", i, m.Path),
		})
	}
	for i, w := range m.Workloads {
		if w.Port == 0 {
			continue
		}
		for r := range max(w.Replicas, 1) {
			uses = append(uses, portUse{
				addr: loopback(w.Port + r), what: "workload " + strings.TrimSpace(w.Name+" "+w.Version),
				fix: fmt.Sprintf("change spec.workloads[%d].port in %s (omit it to choose a free port)", i, m.Path),
			})
		}
	}
	return uses
}

func reservedPorts(m *Mesh) []int {
	var ps []int
	for _, e := range m.Expose {
		ps = append(ps, e.Port)
	}
	for _, w := range m.Workloads {
		for r := range max(w.Replicas, 1) {
			if w.Port != 0 {
				ps = append(ps, w.Port+r)
			}
		}
	}
	return ps
}

func printReady(out io.Writer, m *Mesh, httpAddr, stateDir string) {
	fmt.Fprintln(out)
	for _, e := range m.Expose {
		fmt.Fprintf(out, "%-12s http://%s/\n", e.Service+":", loopback(e.Port))
	}
	if dashboard(httpAddr) {
		fmt.Fprintf(out, "%-12s http://%s/\n", "dashboard:", httpAddr)
	}
	fmt.Fprintf(out, "%-12s %s (weft check, weft stat, weft apply -f FILE)\n", "controller:", httpAddr)
	fmt.Fprintf(out, "%-12s %s (logs in %s)\n", "state dir:", stateDir, statedir.Logs(stateDir))
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
}

// dashboard reports whether the controller serves a web page at "/".
func dashboard(httpAddr string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html")
}

// checkCommands fails when a program to run does not exist, before anything
// was started: otherwise it would only show as a restart loop.
func checkCommands(p *plan) error {
	units := []unitPlan{}
	for _, inst := range p.instances {
		units = append(units, inst.app, inst.proxy)
	}
	units = append(units, p.ingresses...)
	seen := map[string]bool{}
	for _, u := range units {
		path := u.spec.Path
		if !strings.Contains(path, "/") {
			if _, err := exec.LookPath(path); err != nil {
				return fmt.Errorf("%s: program %q is not in PATH; fix its command in the mesh file", u.name, path)
			}
			continue
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(u.spec.Dir, path)
		}
		if seen[path] {
			continue
		}
		seen[path] = true
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%s: program %s not found (%v); fix its command in the mesh file, or build it first", u.name, path, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s: %s is not an executable file; fix its command in the mesh file", u.name, path)
		}
	}
	return nil
}
