package ctlapi

import (
	"context"
	"net/http"
	"net/url"
)

// Routes is GET /api/v1/routes: a service's route rules in precedence
// order, its own backends, and its service-level statistics.
type Routes struct {
	Service  string         `json:"service"`
	Backends []RouteBackend `json:"backends"`
	Rules    []RouteRule    `json:"rules"`
	// Stat is nil when the controller has no statistics.
	Stat   *ServiceStat `json:"stat"`
	Window string       `json:"window"`
}

// RouteRule is one rule (one match of a route's rule).
type RouteRule struct {
	Route          string         `json:"route"`
	Rule           uint32         `json:"rule"`
	Match          string         `json:"match"`
	Backends       []RouteBackend `json:"backends"`
	Filters        []string       `json:"filters"`
	RequestTimeout string         `json:"request_timeout"`
}

// RouteBackend is a weighted backend with its ready endpoints.
type RouteBackend struct {
	Service   string `json:"service"`
	Weight    uint32 `json:"weight"`
	Endpoints int    `json:"endpoints"`
}

// Routes returns the routes of service ("books" or "books.demo") with
// statistics over window ("" means the controller's default).
func (c *Client) Routes(ctx context.Context, service, window string) (*Routes, error) {
	q := url.Values{"service": {service}}
	if window != "" {
		q.Set("window", window)
	}
	var r Routes
	if err := c.do(ctx, http.MethodGet, "/api/v1/routes?"+q.Encode(), nil, "", &r); err != nil {
		return nil, err
	}
	return &r, nil
}
