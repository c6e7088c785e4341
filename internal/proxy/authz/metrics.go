package authz

import (
	"github.com/prometheus/client_golang/prometheus"
)

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
	allow, deny, auditDenies *prometheus.CounterVec
}

type counters struct {
	allow, deny, audit prometheus.Counter
}

// NewMetrics registers the counters of service ("api.default") in reg;
// calling it again with the same reg shares the registered counters.
func NewMetrics(reg prometheus.Registerer, service string) (*Metrics, error) {
	labels := []string{"direction", "service", "policy"}
	m := &Metrics{
		service: service,
		allow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_authz_allow_total", Help: "Inbound connections and requests the authorization policy allowed, by deciding policy.",
		}, labels),
		deny: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_authz_deny_total", Help: "Inbound connections and requests the authorization policy denied, by deciding policy.",
		}, labels),
		auditDenies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_authz_audit_deny_total", Help: "Inbound requests allowed only because the policy audits: deny would have refused them.",
		}, labels),
	}
	for _, c := range []**prometheus.CounterVec{&m.allow, &m.deny, &m.auditDenies} {
		if err := reg.Register(*c); err != nil {
			// A second port of the same proxy shares the counters.
			are, ok := err.(prometheus.AlreadyRegisteredError)
			if !ok {
				return nil, err
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, err
			}
			*c = existing
		}
	}
	return m, nil
}

// resolve returns the counters of one policy label; called at compile
// time, never per request.
func (m *Metrics) resolve(policy string) *counters {
	return &counters{
		allow: m.allow.WithLabelValues("inbound", m.service, policy),
		deny:  m.deny.WithLabelValues("inbound", m.service, policy),
		audit: m.auditDenies.WithLabelValues("inbound", m.service, policy),
	}
}
