package metrics

import "time"

// IdentitySource is what the identity metrics read: the proxy's
// identity.Manager.
type IdentitySource interface {
	// NotAfter is the current certificate's expiry; zero before the first.
	NotAfter() time.Time
	// Renewals counts certificates received after the first.
	Renewals() uint64
}

// RegisterIdentity exposes the proxy's certificate:
// weft_identity_cert_expiry_timestamp_seconds (0 before the first
// certificate) and weft_identity_renewals_total. Call it once.
func (r *Registry) RegisterIdentity(src IdentitySource) {
	r.gaugeFunc("weft_identity_cert_expiry_timestamp_seconds",
		"Expiry of the proxy's workload certificate, in seconds since the Unix epoch; 0 while it has none.",
		func() float64 {
			t := src.NotAfter()
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		})
	r.counterFunc("weft_identity_renewals_total",
		"Workload certificates received after the first.",
		func() float64 { return float64(src.Renewals()) })
}
