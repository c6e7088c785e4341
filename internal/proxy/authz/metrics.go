package authz

import "weft.dev/weft/internal/proxy/metrics"

// Metrics counts decisions of one workload's inbound side:
//
//	weft_authz_allow_total{direction="inbound", service, policy}
//	weft_authz_deny_total{direction="inbound", service, policy}
//	weft_authz_audit_deny_total{direction="inbound", service, policy}
//
// The last counts requests audit mode allowed although deny would refuse
// them. policy is bounded by the documents the controller sends: an
// AuthorizationPolicy ("default/web-reads"), a Server
// ("Server/default/api-http") or "default policy <name>".
type Metrics struct {
	service                  string
	allow, deny, auditDenies metrics.CounterVec
}

type counters struct {
	allow, deny, audit metrics.Counter
}

// NewMetrics registers the counters of service ("api.default") in reg;
// calling it again with the same reg shares the registered counters.
func NewMetrics(reg *metrics.Registry, service string) *Metrics {
	labels := []string{"direction", "service", "policy"}
	return &Metrics{
		service:     service,
		allow:       reg.CounterVec("weft_authz_allow_total", "Inbound connections and requests the authorization policy allowed, by deciding policy.", labels...),
		deny:        reg.CounterVec("weft_authz_deny_total", "Inbound connections and requests the authorization policy denied, by deciding policy.", labels...),
		auditDenies: reg.CounterVec("weft_authz_audit_deny_total", "Inbound requests allowed only because the policy audits: deny would have refused them.", labels...),
	}
}

// resolve returns the counters of one policy label; called at compile
// time, never per request.
func (m *Metrics) resolve(policy string) *counters {
	return &counters{
		allow: m.allow.With("inbound", m.service, policy),
		deny:  m.deny.With("inbound", m.service, policy),
		audit: m.auditDenies.With("inbound", m.service, policy),
	}
}
