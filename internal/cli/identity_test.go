package cli

import (
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/cli/ctlapi"
)

func TestWriteIdentity(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	leaf := now.Add(16 * time.Hour)
	old := now.Add(-time.Minute)
	id := &ctlapi.Identity{
		TrustDomain: "cluster.local",
		Anchors:     []ctlapi.CertInfo{{Subject: "CN=root", NotAfter: now.Add(365 * 24 * time.Hour)}},
		Issuer:      ctlapi.CertInfo{Subject: "CN=issuer", NotAfter: now.Add(10 * 24 * time.Hour)},
		Workloads: []ctlapi.WorkloadIdentity{
			{Service: "api", Namespace: "default", Identity: "spiffe://cluster.local/ns/default/sa/api", Proxies: []ctlapi.ProxyLeaf{
				{ID: "api-0", CertNotAfter: &leaf}, {ID: "api-1", CertNotAfter: &old}, {ID: "api-2"}}},
			{Service: "db", Namespace: "default", Identity: "spiffe://cluster.local/ns/default/sa/db"},
		},
	}
	var b strings.Builder
	if err := writeIdentity(&b, id, now); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	want := `WORKLOAD      IDENTITY                                   PROXY   CERTIFICATE EXPIRES
api.default   spiffe://cluster.local/ns/default/sa/api   api-0   2026-11-26T04:00:00Z (in 16h0m)
api.default   spiffe://cluster.local/ns/default/sa/api   api-1   2026-11-25T11:59:00Z (expired)
api.default   spiffe://cluster.local/ns/default/sa/api   api-2   none issued yet
db.default    spiffe://cluster.local/ns/default/sa/db    -       -

trust domain: cluster.local
trust anchor: CN=root, expires 2027-11-25T12:00:00Z (in 365d)
issuer:       CN=issuer, expires 2026-12-05T12:00:00Z (in 10d)
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCheckWarnsBeforeCAExpiry(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	c := &checker{clock: func() time.Time { return now }, logDir: "/state/logs"}
	tests := []struct {
		name       string
		notAfter   time.Time
		wantMark   string
		wantFailed bool
	}{
		{"valid", now.Add(90 * 24 * time.Hour), okMark, false},
		{"expires within 30 days", now.Add(10 * 24 * time.Hour), warnMark, false},
		{"expired", now.Add(-time.Hour), failMark, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			p := &printer{w: &b}
			certs := []ctlapi.CertInfo{{Subject: "CN=i", NotAfter: tt.notAfter}}
			p.warnOrFail("issuer", c.expiring("issuer", certs), c.expired(certs))
			if got := b.String(); !strings.HasPrefix(got, tt.wantMark+" issuer\n") || p.failed != tt.wantFailed {
				t.Errorf("printed %q, failed %v; want mark %s, failed %v", got, p.failed, tt.wantMark, tt.wantFailed)
			}
		})
	}
}
