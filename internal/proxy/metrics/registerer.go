package metrics

import "github.com/prometheus/client_golang/prometheus"

// Registerer lets another proxy package register collectors of its own
// (package authz's decision counters) in this registry, so they are
// served at /metrics with the rest.
func (r *Registry) Registerer() prometheus.Registerer { return r.reg }
