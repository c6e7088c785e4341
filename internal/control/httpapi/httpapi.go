// Package httpapi is the controller's HTTP API for the CLI and the
// dashboard: mesh status, applying and deleting documents, and service
// statistics, as JSON under /api/v1/. Every request must carry the bearer
// token `weft up` or the installer generated.
//
// The controller imports httpapi. A Handler is safe for concurrent use.
package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/push"
	"weft.dev/weft/internal/control/viz"
)

// MaxApplyBytes bounds the body of an apply request.
const MaxApplyBytes = 4 << 20

// Stats answers service statistics over a recent window (viz.Scraper).
type Stats interface {
	Stat(window time.Duration) []viz.ServiceStat
}

// Edges answers statistics of the edges between services (viz.Scraper).
type Edges interface {
	Edges(window time.Duration) []viz.EdgeStat
}

// Sent reports what each proxy was last sent (push.Server).
type Sent interface {
	Sent() map[string]push.ProxySent
}

// Config configures a Handler.
type Config struct {
	// Token every request must present as "Authorization: Bearer <token>";
	// required.
	Token string
	// Store is the configuration read by status and changed by apply and
	// delete; required unless Source is set.
	Store *memory.Store
	// Source, when Store is nil, is a read-only configuration (Kubernetes
	// mode): status and reads are served from it, apply and delete answer
	// 405 and point the user to kubectl.
	Source config.Source
	// Sent reports what proxies were sent; nil reports no proxy connected.
	Sent Sent
	// Stats answers /api/v1/stat; nil answers 503. When it also implements
	// Edges, /api/v1/edges is served too.
	Stats Stats
	// Identity answers /api/v1/identity; nil answers 503.
	Identity IdentityStatus
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// Handler serves the API.
type Handler struct {
	token []byte
	store *memory.Store
	src   config.Source
	sent  Sent
	stats Stats
	ident IdentityStatus
	log   *slog.Logger
	mux   *http.ServeMux
}

// New returns the API handler. It does no I/O.
func New(cfg Config) (*Handler, error) {
	if cfg.Token == "" {
		return nil, errors.New("httpapi: a bearer token is required")
	}
	var src config.Source = cfg.Source
	if cfg.Store != nil {
		src = cfg.Store
	}
	if src == nil {
		return nil, errors.New("httpapi: a store or a source is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{token: []byte(cfg.Token), store: cfg.Store, src: src, sent: cfg.Sent, stats: cfg.Stats, log: log.With("component", "httpapi"), mux: http.NewServeMux()}
	h.mux.HandleFunc("/api/v1/status", h.method(http.MethodGet, h.status))
	h.mux.HandleFunc("/api/v1/apply", h.method(http.MethodPost, h.apply))
	h.mux.HandleFunc("/api/v1/resources", h.method(http.MethodGet, h.resources))
	h.mux.HandleFunc("/api/v1/resources/{kind}/{namespace}/{name}", h.method(http.MethodDelete, h.deleteResource))
	h.mux.HandleFunc("/api/v1/stat", h.method(http.MethodGet, h.stat))
	h.mux.HandleFunc("/api/v1/edges", h.method(http.MethodGet, h.edges))
	h.mux.HandleFunc("/api/v1/routes", h.method(http.MethodGet, h.routes))
	h.ident = cfg.Identity
	h.mux.HandleFunc("/api/v1/identity", h.method(http.MethodGet, h.identity))
	h.mux.HandleFunc("/api/v1/authz/check", h.method(http.MethodPost, h.authzCheck))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API at %s %s; see /api/v1/status", r.Method, r.URL.Path), nil)
	})
	return h, nil
}

// ServeHTTP checks the bearer token, then serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	got, ok := strings.CutPrefix(auth, "Bearer ")
	// Constant-time comparison: a byte-by-byte early exit would let a
	// client guess the token one byte at a time from response timings.
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), h.token) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
		msg := "missing bearer token: send Authorization: Bearer <token> (the token is in the state directory of `weft up`)"
		if auth != "" {
			msg = "wrong bearer token: use the token of this controller (the token is in the state directory of `weft up`)"
		}
		writeError(w, http.StatusUnauthorized, msg, nil)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) method(m string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m {
			w.Header().Set("Allow", m)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, m), nil)
			return
		}
		fn(w, r)
	}
}

type errorBody struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors,omitempty"`
}

// writeReadOnly answers a change on a read-only source (Kubernetes mode).
func writeReadOnly(w http.ResponseWriter) {
	w.Header().Set("Allow", http.MethodGet)
	writeError(w, http.StatusMethodNotAllowed, "this controller reads its configuration from Kubernetes: on Kubernetes use kubectl apply (or kubectl delete) instead", nil)
}

func writeError(w http.ResponseWriter, code int, msg string, errs []string) {
	writeJSON(w, code, errorBody{Error: msg, Errors: errs})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

// StatusResponse is the body of GET /api/v1/status.
type StatusResponse struct {
	Version  uint64          `json:"version"`
	Proxies  []ProxyStatus   `json:"proxies"`
	Services []ServiceStatus `json:"services"`
}

// ProxyStatus is one proxy in StatusResponse.
type ProxyStatus struct {
	ID        string `json:"id"`
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Version   string `json:"version"`
	AdminAddr string `json:"admin_addr"`
	// Connected is true while the proxy has an open watch. A connected
	// proxy the configuration does not know has an empty service.
	Connected bool `json:"connected"`
	// SentInboundVersion is the version of the last inbound snapshot sent.
	SentInboundVersion uint64 `json:"sent_inbound_version"`
	// Sent maps a watched service to the version last sent for it.
	Sent map[string]uint64 `json:"sent"`
}

// ServiceStatus is one service in StatusResponse.
type ServiceStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Protocol  string `json:"protocol"`
	Endpoints int    `json:"endpoints"`
	Ready     int    `json:"ready"`
}

func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	snap := h.src.Snapshot()
	var sent map[string]push.ProxySent
	if h.sent != nil {
		sent = h.sent.Sent()
	}
	resp := StatusResponse{Version: snap.Version, Proxies: []ProxyStatus{}, Services: []ServiceStatus{}}
	for _, p := range snap.Proxies {
		s := sent[p.ID]
		ps := ProxyStatus{ID: p.ID, Service: p.Service, Namespace: p.Namespace, Version: p.Version, AdminAddr: p.AdminAddr,
			Connected: s.Streams > 0, SentInboundVersion: s.Inbound, Sent: s.Destinations}
		if ps.Sent == nil {
			ps.Sent = map[string]uint64{}
		}
		resp.Proxies = append(resp.Proxies, ps)
	}
	// Proxies connected under an ID the configuration does not know:
	// they get no inbound configuration and stay not ready.
	for id, s := range sent {
		if _, ok := snap.Proxies[id]; !ok {
			resp.Proxies = append(resp.Proxies, ProxyStatus{ID: id, Connected: s.Streams > 0, SentInboundVersion: s.Inbound, Sent: s.Destinations})
		}
	}
	slices.SortFunc(resp.Proxies, func(a, b ProxyStatus) int { return strings.Compare(a.ID, b.ID) })
	for _, svc := range snap.Services {
		ss := ServiceStatus{Name: svc.Name, Namespace: svc.Namespace, Protocol: string(svc.Protocol), Endpoints: len(svc.Endpoints)}
		if ss.Protocol == "" {
			ss.Protocol = "detect"
		}
		for _, ep := range svc.Endpoints {
			if ep.Ready {
				ss.Ready++
			}
		}
		resp.Services = append(resp.Services, ss)
	}
	slices.SortFunc(resp.Services, func(a, b ServiceStatus) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	writeJSON(w, http.StatusOK, resp)
}

// Applied is one resource in the body of a successful apply.
type Applied struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Action is "created", "configured" or "unchanged".
	Action string `json:"action"`
}

// ApplyResponse is the body of a successful POST /api/v1/apply.
type ApplyResponse struct {
	Applied []Applied `json:"applied"`
	DryRun  bool      `json:"dry_run,omitempty"`
}

func (h *Handler) apply(w http.ResponseWriter, r *http.Request) {
	if h.store == nil {
		writeReadOnly(w)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxApplyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is larger than %d MiB; split it into several files", MaxApplyBytes>>20), nil)
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err), nil)
		return
	}
	dryRun := r.URL.Query().Get("dry_run") == "true"
	rs, err := file.Decode(body)
	if err != nil {
		writeRefused(w, err)
		return
	}
	var changes []memory.Change
	if dryRun {
		changes, err = h.store.Plan(rs)
	} else {
		changes, err = h.store.Apply(rs)
	}
	if err != nil {
		writeRefused(w, err)
		return
	}
	resp := ApplyResponse{Applied: []Applied{}, DryRun: dryRun}
	for _, c := range changes {
		resp.Applied = append(resp.Applied, Applied{Kind: c.Kind, Namespace: c.Namespace, Name: c.Name, Action: c.Action})
		if !dryRun && c.Action != memory.Unchanged {
			h.log.Info("resource applied", "id", c.ID, "action", c.Action)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeRefused answers 400 with one entry per joined error.
func writeRefused(w http.ResponseWriter, err error) {
	var list []string
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			list = append(list, e.Error())
		}
	} else {
		list = []string{err.Error()}
	}
	msg := "the file was refused, nothing was applied: " + list[0]
	if len(list) > 1 {
		msg = fmt.Sprintf("the file was refused, nothing was applied: %d errors, fix them all and apply again", len(list))
	}
	writeError(w, http.StatusBadRequest, msg, list)
}

// ResourceJSON is one applied document in GET /api/v1/resources.
type ResourceJSON struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Namespace  string          `json:"namespace"`
	Name       string          `json:"name"`
	Spec       json.RawMessage `json:"spec"`
}

func (h *Handler) resources(w http.ResponseWriter, _ *http.Request) {
	snap := h.src.Snapshot()
	out := struct {
		Resources []ResourceJSON `json:"resources"`
	}{Resources: []ResourceJSON{}}
	for i := range snap.Resources {
		r := &snap.Resources[i]
		out.Resources = append(out.Resources, ResourceJSON{APIVersion: r.APIVersion, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Spec: file.ResourceSpec(r)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) deleteResource(w http.ResponseWriter, r *http.Request) {
	if h.store == nil {
		writeReadOnly(w)
		return
	}
	kind, ns, name := r.PathValue("kind"), r.PathValue("namespace"), r.PathValue("name")
	snap := h.store.Snapshot()
	id := ""
	for i := range snap.Resources {
		res := &snap.Resources[i]
		if strings.EqualFold(res.Kind, kind) && res.Namespace == ns && res.Name == name {
			id = res.ID()
		}
	}
	if id == "" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no %s %s/%s is applied; list them with GET /api/v1/resources", kind, ns, name), nil)
		return
	}
	if err := h.store.Delete(id); err != nil {
		if errors.Is(err, memory.ErrNotFound) {
			writeError(w, http.StatusNotFound, err.Error(), nil)
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	h.log.Info("resource deleted", "id", id)
	kindName, _, _ := strings.Cut(id, "/")
	writeJSON(w, http.StatusOK, map[string]any{"deleted": Applied{Kind: kindName, Namespace: ns, Name: name, Action: "deleted"}})
}

// Window bounds of the statistics endpoints.
const (
	DefaultWindow = 30 * time.Second
	MinWindow     = time.Second
	MaxWindow     = time.Hour
)

func parseWindow(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	s := r.URL.Query().Get("window")
	if s == "" {
		return DefaultWindow, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < MinWindow || d > MaxWindow {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("window %q: give a duration from %s to %s, e.g. 30s or 5m", s, MinWindow, MaxWindow), nil)
		return 0, false
	}
	return d, true
}

func (h *Handler) stat(w http.ResponseWriter, r *http.Request) {
	window, ok := parseWindow(w, r)
	if !ok {
		return
	}
	if h.stats == nil {
		writeError(w, http.StatusServiceUnavailable, "statistics are not available: this controller does not scrape proxies", nil)
		return
	}
	services := h.stats.Stat(window)
	if services == nil {
		services = []viz.ServiceStat{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"window": window.String(), "services": services})
}

func (h *Handler) edges(w http.ResponseWriter, r *http.Request) {
	window, ok := parseWindow(w, r)
	if !ok {
		return
	}
	e, isEdges := h.stats.(Edges)
	if !isEdges {
		writeError(w, http.StatusServiceUnavailable, "edge statistics are not available: this controller does not scrape proxies", nil)
		return
	}
	edges := e.Edges(window)
	if edges == nil {
		edges = []viz.EdgeStat{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"window": window.String(), "edges": edges})
}
