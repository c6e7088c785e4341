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
