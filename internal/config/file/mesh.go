package file

import (
	"fmt"
	"regexp"
	"strings"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/split"
	"weft.dev/weft/internal/proxy/authz"
)

// The Mesh document of local mode.
const (
	MeshAPIVersion = "local.weft.dev/v1alpha1"
	MeshKind       = "Mesh"
)

// Limits of a workload's replicas.
const (
	MinReplicas = 1
	MaxReplicas = 20
)

// Mesh declares the workloads `weft up -f` runs, each behind its own proxy.
type Mesh struct {
	// Name from metadata.name; may be empty.
	Name string
	// Expose lists host ports on 127.0.0.1 that reach a service through an
	// ingress proxy.
	Expose    []Expose
	Workloads []Workload
	// DefaultInboundPolicy is the mesh-wide default inbound policy
	// (spec.defaultInboundPolicy); "" leaves the controller's default
	// (all-unauthenticated). Load turns it into an InboundPolicyDefault.
	DefaultInboundPolicy string
}

// Expose is a host port reaching a service of the mesh.
type Expose struct {
	Service string
	Port    int
}

// Workload is one program of the mesh, run as Replicas processes.
type Workload struct {
	// Name is the service the workload serves (a DNS label).
	Name string
	// Version labels the workload's endpoints; when set, the workload also
	// serves the service "<name>-<version>" (see ServiceName).
	Version string
	// Command is the argv; the supervisor expands ${VAR}.
	Command []string
	// Port is the application port of replica 0; replica i listens on
	// Port+i. Zero means: choose a free port.
	Port int
	// Replicas is 1..20 (1 when the document omits it).
	Replicas int
	// Protocol declared for the service; zero means detect.
	Protocol config.Protocol
	// Calls lists the services the workload calls; each gets a local
	// outbound port in the environment variable AddrEnv(service).
	Calls []string
	Env   map[string]string
	// Dir is the working directory, relative to the file; "" means the
	// file's directory.
	Dir string
	// Ready is the readiness check against the app port.
	Ready Ready
}

// Ready is a readiness check; the zero value means a TCP connect.
type Ready struct {
	// HTTPGet is a path to GET; a 2xx or 3xx answer means ready.
	HTTPGet string
}

// ServiceName is the versioned service of the workload, "<name>-<version>",
// or Name when it has no version.
func (w *Workload) ServiceName() string {
	if w.Version == "" {
		return w.Name
	}
	return w.Name + "-" + w.Version
}

// AddrEnv is the environment variable carrying the local outbound address
// of a called service: "api-gw" → "WEFT_API_GW_ADDR".
func AddrEnv(service string) string {
	return "WEFT_" + strings.ToUpper(strings.ReplaceAll(service, "-", "_")) + "_ADDR"
}

// Services returns the services the mesh declares, without endpoints: one
// per workload name (all its versions) and one per versioned workload
// ("api-v1"), in declaration order.
func (m *Mesh) Services() []config.Service {
	var out []config.Service
	seen := map[string]bool{}
	add := func(name string, p config.Protocol) {
		if !seen[name] {
			seen[name] = true
			out = append(out, config.Service{Name: name, Namespace: config.DefaultNamespace, Protocol: p})
		}
	}
	for _, w := range m.Workloads {
		add(w.Name, w.Protocol)
		if w.Version != "" {
			add(w.ServiceName(), w.Protocol)
		}
	}
	return out
}

type meshSpec struct {
	Expose               []meshExpose   `json:"expose"`
	Workloads            []meshWorkload `json:"workloads"`
	DefaultInboundPolicy string         `json:"defaultInboundPolicy"`
}

type meshExpose struct {
	Service string `json:"service"`
	Port    int    `json:"port"`
}

type meshWorkload struct {
	Name     string            `json:"name"`
	Version  string            `json:"version"`
	Command  []string          `json:"command"`
	Port     *int              `json:"port"`
	Replicas *int              `json:"replicas"`
	Protocol string            `json:"protocol"`
	Calls    []string          `json:"calls"`
	Env      map[string]string `json:"env"`
	Dir      string            `json:"dir"`
	Ready    *meshReady        `json:"ready"`
}

type meshReady struct {
	HTTPGet string `json:"httpGet"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func decodeMesh(obj map[string]any, raw []byte, _ string) (any, []error) {
	spec, errs := decodeSpec[meshSpec](obj, raw)
	if errs != nil {
		return nil, errs
	}
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	m := &Mesh{Name: name, DefaultInboundPolicy: spec.DefaultInboundPolicy}
	if m.DefaultInboundPolicy != "" {
		if _, err := authz.ParseDefault(m.DefaultInboundPolicy); err != nil {
			errs = append(errs, fmt.Errorf("spec.defaultInboundPolicy: %w", err))
		}
	}
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(spec.Workloads) == 0 {
		add("spec.workloads", "at least one workload is required")
	}
	var names []string
	for _, w := range spec.Workloads {
		if w.Name != "" {
			names = append(names, w.Name)
			if w.Version != "" {
				names = append(names, w.Name+"-"+w.Version)
			}
		}
	}
	declared := sortedUnique(names)
	isDeclared := func(s string) bool {
		for _, d := range declared {
			if d == s {
				return true
			}
		}
		return false
	}
	undeclared := func(field, s string) {
		add(field, "service %q is not declared (declared: %s)", s, strings.Join(declared, ", "))
	}
	type span struct {
		field    string
		lo, hi   int
		protocol config.Protocol
	}
	byNameVersion := map[[2]string]int{}
	protocolOf := map[string]span{}
	var ports []span
	for i, ww := range spec.Workloads {
		f := fmt.Sprintf("spec.workloads[%d]", i)
		w := Workload{Name: ww.Name, Version: ww.Version, Command: ww.Command, Replicas: 1, Calls: ww.Calls, Env: ww.Env, Dir: ww.Dir}
		if w.Name == "" {
			add(f+".name", "required: the service name of the workload")
		} else if msg := split.CheckServiceName(w.Name); msg != "" {
			add(f+".name", "%s", msg)
		}
		if w.Version != "" {
			if msg := split.CheckServiceName(w.Version); msg != "" {
				add(f+".version", "%s", strings.Replace(msg, "service name", "version", 1))
			} else if len(w.ServiceName()) > 63 {
				add(f+".version", "service %q is longer than 63 characters; shorten the name or version", w.ServiceName())
			}
		}
		key := [2]string{w.Name, w.Version}
		if j, dup := byNameVersion[key]; dup && w.Name != "" {
			if w.Version == "" {
				add(f, "duplicate workload %q (also spec.workloads[%d]); use replicas, or give each a version", w.Name, j)
			} else {
				add(f, "duplicate workload %q version %q (also spec.workloads[%d]); give each a different version", w.Name, w.Version, j)
			}
		} else {
			byNameVersion[key] = i
		}
		if len(w.Command) == 0 || w.Command[0] == "" {
			add(f+".command", "required: the program and its arguments, e.g. [\"./web\", \"--listen\", \"127.0.0.1:${PORT}\"]")
		}
		if ww.Replicas != nil {
			w.Replicas = *ww.Replicas
			if w.Replicas < MinReplicas || w.Replicas > MaxReplicas {
				add(f+".replicas", "%d is out of range (%d to %d)", w.Replicas, MinReplicas, MaxReplicas)
			}
		}
		if ww.Port != nil {
			w.Port = *ww.Port
			switch {
			case w.Port < 1 || w.Port > 65535:
				add(f+".port", "%d is out of range (1 to 65535); omit it to choose a free port", w.Port)
			case w.Port+w.Replicas-1 > 65535:
				add(f+".port", "replicas listen on %d to %d, beyond 65535", w.Port, w.Port+w.Replicas-1)
			default:
				s := span{field: f + ".port", lo: w.Port, hi: w.Port + w.Replicas - 1}
				for _, o := range ports {
					if s.lo <= o.hi && o.lo <= s.hi {
						add(f+".port", "ports %d-%d overlap %s (%d-%d); replica i listens on port+i", s.lo, s.hi, o.field, o.lo, o.hi)
					}
				}
				ports = append(ports, s)
			}
		}
		p, err := config.ParseProtocol(ww.Protocol)
		if err != nil {
			add(f+".protocol", "%v", err)
		} else if w.Name != "" {
			w.Protocol = p
			if o, ok := protocolOf[w.Name]; ok && o.protocol != p {
				add(f+".protocol", "%q differs from %s (%q); versions of a service speak one protocol", ww.Protocol, o.field, string(o.protocol))
			} else if !ok {
				protocolOf[w.Name] = span{field: f + ".protocol", protocol: p}
			}
		}
		calls := map[string]bool{}
		for j, c := range w.Calls {
			cf := fmt.Sprintf("%s.calls[%d]", f, j)
			switch {
			case !isDeclared(c):
				undeclared(cf, c)
			case calls[c]:
				add(cf, "%q is listed twice", c)
			}
			calls[c] = true
		}
		for _, k := range sortedUnique(keysOf(w.Env)) {
			if !envName.MatchString(k) {
				add(f+".env."+k, "not a valid environment variable name (letters, digits and '_', not starting with a digit)")
			}
		}
		if ww.Ready != nil {
			w.Ready.HTTPGet = ww.Ready.HTTPGet
			if !strings.HasPrefix(w.Ready.HTTPGet, "/") {
				add(f+".ready.httpGet", "%q must be a path starting with '/', e.g. /healthz", w.Ready.HTTPGet)
			}
		}
		m.Workloads = append(m.Workloads, w)
	}
	exposed := map[int]int{}
	for i, e := range spec.Expose {
		f := fmt.Sprintf("spec.expose[%d]", i)
		switch {
		case e.Service == "":
			add(f+".service", "required: the service to reach")
		case !isDeclared(e.Service):
			undeclared(f+".service", e.Service)
		}
		switch j, dup := exposed[e.Port]; {
		case e.Port < 1 || e.Port > 65535:
			add(f+".port", "%d is out of range (1 to 65535)", e.Port)
		case dup:
			add(f+".port", "%d is exposed twice (also spec.expose[%d])", e.Port, j)
		default:
			exposed[e.Port] = i
		}
		m.Expose = append(m.Expose, Expose(e))
	}
	if errs != nil {
		return nil, errs
	}
	return m, nil
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
