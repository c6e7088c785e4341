package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Server serves the webhook over TLS: POST /inject (AdmissionReview v1)
// and GET /healthz. The certificate files are read again when they change
// (a Secret volume is updated in place), so a rotated serving certificate
// needs no restart. Build it with NewServer.
type Server struct {
	// Addr to listen on, e.g. "0.0.0.0:8443"; port 0 picks one (see
	// Addr after Ready).
	Addr string
	// CertFile and KeyFile hold the serving certificate and key (PEM).
	CertFile, KeyFile string
	// Handler answers /inject; required.
	Handler http.Handler
	// Logger; nil discards logs.
	Logger *slog.Logger

	ready chan struct{}
	addr  net.Addr

	// mu guards cert and certMod, the loaded certificate and the
	// modification time of CertFile it was loaded at.
	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
}

// NewServer returns a Server; it does no I/O.
func NewServer(addr, certFile, keyFile string, h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{Addr: addr, CertFile: certFile, KeyFile: keyFile, Handler: h, Logger: log, ready: make(chan struct{})}
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// ListenAddr returns the bound address after Ready.
func (s *Server) ListenAddr() net.Addr { return s.addr }

// certificate returns the serving certificate, reloading the files when
// CertFile changed.
func (s *Server) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	fi, err := os.Stat(s.CertFile)
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && fi.ModTime().Equal(s.certMod) {
		return s.cert, nil
	}
	c, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		if s.cert != nil {
			// A half-written update: keep serving the previous one.
			s.Logger.Warn("webhook certificate reload; keeping the previous one", "err", err)
			return s.cert, nil
		}
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	s.cert, s.certMod = &c, fi.ModTime()
	return s.cert, nil
}

// Run serves until ctx ends, then shuts down within 5 seconds.
func (s *Server) Run(ctx context.Context) error {
	if s.Handler == nil {
		return errors.New("inject server: no handler")
	}
	// Fail at start, not at the API server's first call.
	if _, err := s.certificate(nil); err != nil {
		return fmt.Errorf("inject server: %w (mount the webhook Secret at the certificate directory)", err)
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("inject server: listen %s: %w", s.Addr, err)
	}
	s.addr = ln.Addr()
	mux := http.NewServeMux()
	mux.Handle("POST /inject", s.Handler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certificate},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
	}
	close(s.ready)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("inject server: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	<-done
	if err != nil {
		return fmt.Errorf("inject server: shutdown: %w", err)
	}
	return nil
}
