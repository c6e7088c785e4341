package local

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/local/proc"
)

// Mesh is what `weft up` runs: the workloads of a mesh file and the services
// exposed on fixed local ports.
type Mesh struct {
	// Path of the mesh file, for messages.
	Path string
	// Dir is the directory relative workload directories are resolved
	// against, normally the mesh file's directory.
	Dir       string
	Expose    []Expose
	Workloads []Workload
}

// Expose publishes a service on a fixed port of 127.0.0.1 through an
// ingress proxy.
type Expose struct {
	Service string
	Port    int
}

// Workload is one program of the mesh with its replicas.
type Workload struct {
	Name    string
	Version string // "" when the service has a single version
	Command []string
	// Port is the application port of replica 0, replica i listens on
	// Port+i; 0 chooses a free port per replica.
	Port int
	// Replicas is the number of instances; 0 means 1.
	Replicas int
	Protocol config.Protocol
	// Calls names the services the workload calls, each reached through a
	// local port of its proxy given as WEFT_<NAME>_ADDR.
	Calls []string
	Env   map[string]string
	// Dir is the working directory; relative to Mesh.Dir; "" means Mesh.Dir.
	Dir string
	// ReadyPath, when set, is an HTTP path on the application port that
	// answers 2xx or 3xx once the application is ready; otherwise the
	// application is ready when its port accepts connections (or, for a
	// workload nobody calls, once it runs).
	ReadyPath string
}

// planEnv is what building a plan needs besides the mesh.
type planEnv struct {
	// ProxyBin is the path of weft-proxy.
	ProxyBin string
	// BinDir is given to children as WEFT_BIN.
	BinDir string
	// LogDir receives one log file per child.
	LogDir string
	// ControllerGRPC is the controller's gRPC address.
	ControllerGRPC string
	TrustDomain    string
	// Identity gives every proxy its trust anchors and join token; nil
	// passes no identity flags (plans built only to be inspected).
	Identity *meshIdentity
	// LogLevel of the proxies.
	LogLevel string
	// Environ is the environment children inherit (os.Environ()).
	Environ []string
	// FreePort returns a free port of 127.0.0.1 not returned before.
	FreePort func() (int, error)
}

// plan is everything the supervisor starts and registers.
type plan struct {
	services  []config.Service
	proxies   []config.Proxy
	instances []*instancePlan
	ingresses []unitPlan
}

// instancePlan is one replica: an application and its proxy, registered
// as one endpoint of each of its service keys once both are ready.
type instancePlan struct {
	id       string
	keys     []config.ServiceKey
	endpoint config.Endpoint
	app      unitPlan
	proxy    unitPlan
	// client instances are called by nobody (load generators); they are
	// stopped first.
	client bool
}

// probeKind says how a unit's readiness is checked.
type probeKind int

const (
	probeTCP     probeKind = iota // the address accepts connections
	probeHTTP                     // GET the URL answers 2xx
	probeRunning                  // the process runs
)

// unitPlan is one child process.
type unitPlan struct {
	name    string
	spec    proc.Spec
	logPath string
	probe   probeKind
	// probeAddr is host:port for probeTCP; probeURL the URL for probeHTTP.
	probeAddr string
	probeURL  string
	// proxyReady: probeURL is a proxy's /ready (status 200 only).
	proxyReady bool
}

// instanceID names replica i of w: "<name>-<version>-<i>" or "<name>-<i>".
func instanceID(w *Workload, i int) string {
	if w.Version != "" {
		return fmt.Sprintf("%s-%s-%d", w.Name, w.Version, i)
	}
	return fmt.Sprintf("%s-%d", w.Name, i)
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// buildPlan turns a mesh into the processes to run, choosing free ports.
func buildPlan(m *Mesh, env planEnv) (*plan, error) {
	p := &plan{}
	ns := config.DefaultNamespace
	called := map[string]bool{}
	for _, e := range m.Expose {
		called[e.Service] = true
	}
	for _, w := range m.Workloads {
		for _, c := range w.Calls {
			called[config.ParseAuthority(c, ns).Name()] = true
		}
	}

	seen := map[string]bool{}
	for _, w := range m.Workloads {
		if !seen[w.Name] {
			seen[w.Name] = true
			p.services = append(p.services, config.Service{Name: w.Name, Namespace: ns, Protocol: w.Protocol})
		}
		if w.Version != "" {
			p.services = append(p.services, config.Service{Name: w.Name + "-" + w.Version, Namespace: ns, Protocol: w.Protocol})
		}
	}

	for wi := range m.Workloads {
		w := &m.Workloads[wi]
		replicas := max(w.Replicas, 1)
		if len(w.Command) == 0 {
			return nil, fmt.Errorf("workload %s: no command; set spec.workloads[%d].command", w.Name, wi)
		}
		dir := m.Dir
		if w.Dir != "" {
			dir = w.Dir
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(m.Dir, dir)
			}
		}
		keys := []config.ServiceKey{config.Key(w.Name, ns)}
		if w.Version != "" {
			keys = append(keys, config.Key(w.Name+"-"+w.Version, ns))
		}
		client := !called[w.Name] && w.ReadyPath == ""
		for i := range replicas {
			inst, err := planInstance(w, i, dir, keys, client, env)
			if err != nil {
				return nil, err
			}
			p.instances = append(p.instances, inst)
			p.proxies = append(p.proxies, config.Proxy{
				ID: inst.id, Service: w.Name, Namespace: ns, Version: w.Version,
				AdminAddr: inst.proxy.probeAddr,
				Ports:     []config.InboundPort{{Port: uint32(appPortOf(inst)), Protocol: w.Protocol}},
			})
		}
	}

	for _, e := range m.Expose {
		admin, err := env.FreePort()
		if err != nil {
			return nil, err
		}
		id := "ingress-" + e.Service
		args := []string{
			"--id", id, "--service", "ingress", "--namespace", ns,
			"--controller", env.ControllerGRPC, "--admin", loopback(admin),
			"--outbound", loopback(e.Port) + "=" + e.Service,
		}
		if args, err = withIdentity(args, env, id, ns, "ingress"); err != nil {
			return nil, err
		}
		if env.LogLevel != "" {
			args = append(args, "--log-level", env.LogLevel)
		}
		p.ingresses = append(p.ingresses, unitPlan{
			name:       id,
			spec:       proc.Spec{Path: env.ProxyBin, Args: args, Env: env.Environ},
			logPath:    filepath.Join(env.LogDir, id+".proxy.log"),
			probe:      probeHTTP,
			probeAddr:  loopback(admin),
			probeURL:   "http://" + loopback(admin) + "/ready",
			proxyReady: true,
		})
		p.proxies = append(p.proxies, config.Proxy{ID: id, Service: "ingress", Namespace: ns, AdminAddr: loopback(admin)})
	}
	return p, nil
}

// appPortOf returns the application port of an instance.
func appPortOf(inst *instancePlan) int {
	_, port, _ := net.SplitHostPort(inst.app.probeAddr)
	n, _ := strconv.Atoi(port)
	return n
}

func planInstance(w *Workload, i int, dir string, keys []config.ServiceKey, client bool, env planEnv) (*instancePlan, error) {
	ns := config.DefaultNamespace
	id := instanceID(w, i)
	appPort := w.Port + i
	var err error
	if w.Port == 0 {
		if appPort, err = env.FreePort(); err != nil {
			return nil, err
		}
	}
	inbound, err := env.FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := env.FreePort()
	if err != nil {
		return nil, err
	}

	vars := map[string]string{}
	for _, kv := range env.Environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	extra := map[string]string{
		"WEFT_BIN":      env.BinDir,
		"PORT":          strconv.Itoa(appPort),
		"WEFT_SERVICE":  w.Name,
		"WEFT_VERSION":  w.Version,
		"WEFT_INSTANCE": id,
	}
	proxyArgs := []string{
		"--id", id, "--service", w.Name, "--namespace", ns,
		"--controller", env.ControllerGRPC, "--admin", loopback(admin),
	}
	if w.Version != "" {
		proxyArgs = append(proxyArgs, "--version", w.Version)
	}
	if proxyArgs, err = withIdentity(proxyArgs, env, id, ns, w.Name); err != nil {
		return nil, err
	}
	in := loopback(inbound) + "=" + loopback(appPort)
	if w.Protocol != config.ProtocolDetect {
		in += "/" + string(w.Protocol)
	}
	proxyArgs = append(proxyArgs, "--inbound", in)
	for _, c := range w.Calls {
		port, err := env.FreePort()
		if err != nil {
			return nil, err
		}
		extra[file.AddrEnv(c)] = loopback(port)
		proxyArgs = append(proxyArgs, "--outbound", loopback(port)+"="+c)
	}
	if env.LogLevel != "" {
		proxyArgs = append(proxyArgs, "--log-level", env.LogLevel)
	}
	// User variables come last: they may refer to the ones above.
	for k, v := range extra {
		vars[k] = v
	}
	userKeys := make([]string, 0, len(w.Env))
	for k := range w.Env {
		userKeys = append(userKeys, k)
	}
	slices.Sort(userKeys)
	for _, k := range userKeys {
		vars[k] = os.Expand(w.Env[k], func(s string) string { return vars[s] })
	}
	command := make([]string, len(w.Command))
	for j, a := range w.Command {
		command[j] = os.Expand(a, func(s string) string { return vars[s] })
	}
	appEnv := make([]string, 0, len(vars))
	for k, v := range vars {
		appEnv = append(appEnv, k+"="+v)
	}
	slices.Sort(appEnv)

	app := unitPlan{
		name:      id,
		spec:      proc.Spec{Path: command[0], Args: command[1:], Env: appEnv, Dir: dir},
		logPath:   filepath.Join(env.LogDir, id+".log"),
		probe:     probeTCP,
		probeAddr: loopback(appPort),
	}
	switch {
	case w.ReadyPath != "":
		app.probe = probeHTTP
		app.probeURL = "http://" + loopback(appPort) + "/" + strings.TrimPrefix(w.ReadyPath, "/")
	case client:
		app.probe = probeRunning
	}
	labels := map[string]string{}
	if w.Version != "" {
		labels["version"] = w.Version
	}
	return &instancePlan{
		id:   id,
		keys: keys,
		endpoint: config.Endpoint{
			Address:  loopback(inbound),
			Identity: config.SpiffeID(env.TrustDomain, ns, w.Name),
			Meshed:   true,
			Labels:   labels,
			Ready:    true,
		},
		app: app,
		proxy: unitPlan{
			name:       id + ".proxy",
			spec:       proc.Spec{Path: env.ProxyBin, Args: proxyArgs, Env: env.Environ},
			logPath:    filepath.Join(env.LogDir, id+".proxy.log"),
			probe:      probeHTTP,
			probeAddr:  loopback(admin),
			probeURL:   "http://" + loopback(admin) + "/ready",
			proxyReady: true,
		},
		client: client,
	}, nil
}
