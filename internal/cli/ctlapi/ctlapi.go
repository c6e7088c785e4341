// Package ctlapi is the client of the controller's HTTP API
// (/api/v1/...) that the CLI uses: status, apply, resources, delete and
// stat, authenticated with the bearer token of the local mesh.
//
// Only the CLI imports ctlapi. A Client is safe for concurrent use.
package ctlapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls one controller.
type Client struct {
	base  string // "http://127.0.0.1:8085"
	token string
	http  *http.Client
}

// New returns a client of the controller at addr (host:port or URL),
// authenticating with token. hc nil means a client with a 30s timeout.
func New(addr, token string, hc *http.Client) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: hc}
}

// Addr returns the controller's base URL.
func (c *Client) Addr() string { return c.base }

// APIError is a non-2xx answer of the controller.
type APIError struct {
	Status int
	// Message is the "error" field of the body, or the body itself.
	Message string
	// Errors lists the problems of a rejected document, one per item.
	Errors []string
}

func (e *APIError) Error() string {
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return fmt.Sprintf("the controller refused the API token (HTTP %d): the state directory belongs to another weft up; restart weft up, or pass the --state-dir it uses", e.Status)
	case e.Message != "":
		return e.Message
	}
	return fmt.Sprintf("controller answered HTTP %d", e.Status)
}

// Unreachable reports that the controller could not be reached at all.
type Unreachable struct {
	Addr string
	Err  error
}

func (e *Unreachable) Error() string {
	return fmt.Sprintf("controller at %s is not reachable: %v; is weft up still running?", e.Addr, e.Err)
}

func (e *Unreachable) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &Unreachable{Addr: c.base, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &Unreachable{Addr: c.base, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		var body struct {
			Error  string   `json:"error"`
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(data, &body) == nil {
			e.Message, e.Errors = body.Error, body.Errors
		} else {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Status is GET /api/v1/status.
type Status struct {
	Version  uint64          `json:"version"`
	Proxies  []ProxyStatus   `json:"proxies"`
	Services []ServiceStatus `json:"services"`
}

// ProxyStatus is the controller's view of one proxy.
type ProxyStatus struct {
	ID        string `json:"id"`
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Version   string `json:"version"`
	AdminAddr string `json:"admin_addr"`
	Connected bool   `json:"connected"`
	// SentInboundVersion is the last inbound snapshot version sent.
	SentInboundVersion uint64 `json:"sent_inbound_version"`
	// Sent maps an authority ("api.default") to the last version sent.
	Sent map[string]uint64 `json:"sent"`
}

// ServiceStatus counts a service's endpoints.
type ServiceStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Endpoints int    `json:"endpoints"`
	Ready     int    `json:"ready"`
}

// Status returns the controller's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, "", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Applied is one resource an apply changed (or would change).
type Applied struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Action is "created", "configured" or "unchanged".
	Action string `json:"action"`
}

// Apply sends a YAML file; a rejected file is an *APIError with Errors.
func (c *Client) Apply(ctx context.Context, yaml []byte, dryRun bool) ([]Applied, error) {
	path := "/api/v1/apply"
	if dryRun {
		path += "?dry_run=true"
	}
	var out struct {
		Applied []Applied `json:"applied"`
	}
	if err := c.do(ctx, http.MethodPost, path, bytes.NewReader(yaml), "application/yaml", &out); err != nil {
		return nil, err
	}
	return out.Applied, nil
}

// Resource is one applied document.
type Resource struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Namespace  string          `json:"namespace"`
	Name       string          `json:"name"`
	Spec       json.RawMessage `json:"spec"`
}

// Resources lists the applied documents.
func (c *Client) Resources(ctx context.Context) ([]Resource, error) {
	var out struct {
		Resources []Resource `json:"resources"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/resources", nil, "", &out); err != nil {
		return nil, err
	}
	return out.Resources, nil
}

// Delete removes an applied document.
func (c *Client) Delete(ctx context.Context, kind, ns, name string) error {
	path := "/api/v1/resources/" + url.PathEscape(kind) + "/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
	return c.do(ctx, http.MethodDelete, path, nil, "", nil)
}

// Stat is GET /api/v1/stat.
type Stat struct {
	Window   string        `json:"window"`
	Services []ServiceStat `json:"services"`
}

// ServiceStat holds the golden metrics of one service. Pointers are nil
// when there is no data.
type ServiceStat struct {
	Name           string   `json:"name"`
	Namespace      string   `json:"namespace"`
	Instances      int      `json:"instances"`
	Meshed         int      `json:"meshed"`
	Requests       float64  `json:"requests"`
	SuccessRate    *float64 `json:"success_rate"`
	RPS            float64  `json:"rps"`
	P50Ms          *float64 `json:"p50_ms"`
	P95Ms          *float64 `json:"p95_ms"`
	P99Ms          *float64 `json:"p99_ms"`
	TCPConnections float64  `json:"tcp_connections"`
}

// Stat returns golden metrics over window ("30s"); "" means the
// controller's default.
func (c *Client) Stat(ctx context.Context, window string) (*Stat, error) {
	path := "/api/v1/stat"
	if window != "" {
		path += "?window=" + url.QueryEscape(window)
	}
	var s Stat
	if err := c.do(ctx, http.MethodGet, path, nil, "", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// IsUnauthorized reports whether err is the controller refusing the token.
func IsUnauthorized(err error) bool {
	var e *APIError
	return errors.As(err, &e) && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// Identity is GET /api/v1/identity: the mesh's certificate authority and
// the certificates it issued.
type Identity struct {
	TrustDomain string             `json:"trust_domain"`
	Anchors     []CertInfo         `json:"anchors"`
	Issuer      CertInfo           `json:"issuer"`
	Workloads   []WorkloadIdentity `json:"workloads"`
}

// CertInfo is one CA certificate.
type CertInfo struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// WorkloadIdentity is one workload and its proxies' certificates.
type WorkloadIdentity struct {
	Service   string      `json:"service"`
	Namespace string      `json:"namespace"`
	Identity  string      `json:"identity"`
	Proxies   []ProxyLeaf `json:"proxies"`
}

// ProxyLeaf is the newest certificate issued to a proxy; nil times mean
// none was issued since the controller started.
type ProxyLeaf struct {
	ID           string     `json:"id"`
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	IssuedAt     *time.Time `json:"issued_at,omitempty"`
}

// Identity returns the certificate authority's status. A controller that
// runs no certificate authority answers an *APIError with status 503 or 404.
func (c *Client) Identity(ctx context.Context) (*Identity, error) {
	var id Identity
	if err := c.do(ctx, http.MethodGet, "/api/v1/identity", nil, "", &id); err != nil {
		return nil, err
	}
	return &id, nil
}

// Edges is GET /api/v1/edges: traffic between services over a window.
type Edges struct {
	Window string     `json:"window"`
	Edges  []EdgeStat `json:"edges"`
}

// EdgeStat is the traffic from one service ("name.namespace") to another.
type EdgeStat struct {
	From        string   `json:"from"`
	To          string   `json:"to"`
	Requests    float64  `json:"requests"`
	RPS         float64  `json:"rps"`
	SuccessRate *float64 `json:"success_rate"`
}

// Edges returns the traffic between services over window ("30s"); ""
// means the controller's default.
func (c *Client) Edges(ctx context.Context, window string) (*Edges, error) {
	path := "/api/v1/edges"
	if window != "" {
		path += "?window=" + url.QueryEscape(window)
	}
	var e Edges
	if err := c.do(ctx, http.MethodGet, path, nil, "", &e); err != nil {
		return nil, err
	}
	return &e, nil
}
