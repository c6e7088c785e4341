package inbound

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"weft.dev/weft/internal/proxy/authz"
	"weft.dev/weft/internal/proxy/http1"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/pathnorm"
	"weft.dev/weft/internal/proxy/proxyerr"
)

// This file applies the port's authorization policy (package authz): per
// request for HTTP, per connection for opaque TCP. The request path is
// normalised once (package pathnorm); the policy judges the normalised
// path and the application receives exactly that path.

// grpcPermissionDenied is the gRPC status of a request denied by policy.
const grpcPermissionDenied = 7

func (s *Server) policy() *authz.Policy {
	if s.cfg.Authz == nil {
		return authz.AllowAll
	}
	return s.cfg.Authz()
}

// normalise returns the normal form of a request path, or the 400 to
// answer. "*" (OPTIONS *) and "" (CONNECT) have no path to normalise.
func normalise(path string) (string, error) {
	if path == "*" || path == "" {
		return path, nil
	}
	n, err := pathnorm.Normalize(path)
	if err != nil {
		return "", proxyerr.New(http.StatusBadRequest, "%s", err.Error())
	}
	return n, nil
}

// authorizeHTTP1 normalises the request's path, replacing the target to
// forward when it changed, and judges the request. A non-nil error is the
// proxy's answer; m has counted the request and its answer.
func (s *Server) authorizeHTTP1(req *http1.RequestHead, peer string, m *metrics.Service) error {
	path, err := normalise(req.Path())
	if err == nil && path != req.Path() {
		req.SetPath(path)
	}
	if err == nil {
		pol := s.policy()
		err = s.judge(pol, pol.Request(peer, &authz.Request{Method: req.Method(), Path: path, Host: req.Host(), Header: req}), false)
	}
	if err != nil {
		m.Response(proxyerr.From(err).Status, true, 0)
	}
	return err
}

// authorizeHTTP2 does the same for HTTP/2 and gRPC, rewriting r.URL,
// which h2 forwards.
func (s *Server) authorizeHTTP2(r *http.Request, peer string, m *metrics.Service) error {
	grpc := strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if r.Method == http.MethodConnect {
		raw = ""
	}
	path, err := normalise(raw)
	if err == nil && path != raw && path != "" {
		r.URL.RawPath = path
		if r.URL.Path, err = url.PathUnescape(path); err != nil {
			err = proxyerr.New(http.StatusBadRequest, "invalid request path: %v", err)
		}
	}
	if err == nil {
		pol := s.policy()
		err = s.judge(pol, pol.Request(peer, &authz.Request{Method: r.Method, Path: path, Host: r.Host, Header: r.Header}), grpc)
	}
	if err != nil {
		m.Response(proxyerr.From(err).Status, true, 0)
	}
	return err
}

// judge records d and returns the proxy's answer to a denial.
func (s *Server) judge(pol *authz.Policy, d authz.Decision, grpc bool) error {
	pol.Record(d)
	if d.Audit {
		s.log.Info("request allowed by audit mode; deny would refuse it", "policy", d.By, "why", d.Why())
	}
	if d.Allowed {
		return nil
	}
	s.log.Info("request denied by policy", "policy", d.By, "why", d.Why())
	pe := proxyerr.New(http.StatusForbidden, "%s", d.Reason())
	if grpc {
		pe.GRPCStatus = grpcPermissionDenied
	}
	return pe
}

// authorizeTCP judges an opaque connection; a denied one is closed at
// once by the caller, without a byte sent.
func (s *Server) authorizeTCP(c net.Conn, peer string) bool {
	pol := s.policy()
	d := pol.Connection(peer, false)
	pol.Record(d)
	if d.Audit {
		s.log.Info("connection allowed by audit mode; deny would refuse it", "policy", d.By, "remote", c.RemoteAddr().String(), "why", d.Why())
	}
	if !d.Allowed {
		s.log.Info("connection denied by policy", "policy", d.By, "remote", c.RemoteAddr().String(), "why", d.Why())
	}
	return d.Allowed
}
