// Package admin is the proxy's admin HTTP server: /metrics (Prometheus
// text format), /live, /ready and /status (JSON), as every part of Weft
// (the controller's scraper, Kubernetes probes, `weft` commands) expects
// them.
//
// Only the proxy's assembly (internal/proxy/sidecar) imports admin. A
// Server is safe for concurrent use.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Status is the body of /status.
type Status struct {
	ID             string                       `json:"id"`
	Service        string                       `json:"service"`
	Ready          bool                         `json:"ready"`
	InboundVersion uint64                       `json:"inbound_version"`
	Destinations   map[string]DestinationStatus `json:"destinations"`
	// Identity is the SPIFFE ID of the proxy's certificate; empty before
	// the first.
	Identity string `json:"identity,omitempty"`
	// CertNotAfter is the certificate's expiry (RFC 3339); nil before the
	// first.
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
}

// DestinationStatus is one destination in Status, keyed by its canonical
// service name.
type DestinationStatus struct {
	Version   uint64 `json:"version"`
	Endpoints int    `json:"endpoints"`
}

// Config of a Server. Metrics, Ready and Status are required.
type Config struct {
	// Metrics serves /metrics.
	Metrics http.Handler
	// Ready reports readiness and, when not ready, why.
	Ready func() (ready bool, reason string)
	// Status builds /status.
	Status func() Status
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// Server serves the admin endpoints.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New returns a Server; it does no I/O.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.Handle("GET /metrics", cfg.Metrics)
	s.mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("live\n"))
	})
	s.mux.HandleFunc("GET /ready", s.ready)
	s.mux.HandleFunc("GET /status", s.status)
	return s
}

// Handler returns the admin endpoints as one handler.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ok, reason := s.cfg.Ready()
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: " + reason + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	st := s.cfg.Status()
	if st.Destinations == nil {
		st.Destinations = map[string]DestinationStatus{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

// Serve answers on ln until ctx ends, then closes it, giving open
// requests a second to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
