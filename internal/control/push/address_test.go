package push

import (
	"fmt"
	"strings"
	"testing"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// describeDest prints a destination snapshot as "exists service: address
// meshed identity, ...".
func describeDest(m *meshv1.DestinationSnapshot) string {
	var eps []string
	for _, b := range m.GetBackends() {
		for _, e := range b.GetEndpoints() {
			eps = append(eps, fmt.Sprintf("%s@%s meshed=%v %s", e.GetAddress(), b.GetService(), e.GetMeshed(), e.GetIdentity()))
		}
	}
	return fmt.Sprintf("exists=%v service=%s protocol=%s: %s", m.GetExists(), m.GetService(), m.GetProtocol(), strings.Join(eps, ", "))
}

// TestDestinationByAddress resolves captured original destinations over a
// real Destinations.Watch stream: a cluster IP and port, a pod's IP, and
// an address the mesh does not know.
func TestDestinationByAddress(t *testing.T) {
	f := start(t)
	const web = "spiffe://cluster.local/ns/default/sa/web"
	f.store.SetService(config.Service{
		Name: "db", ClusterIPs: []string{"10.96.0.10"}, Protocol: config.ProtocolHTTP1,
		Ports: []config.ServicePort{{Name: "http", Port: 80, TargetPort: "8080"}, {Name: "admin", Port: 9000, TargetPort: "9001"}},
		Endpoints: []config.Endpoint{
			{Address: "198.18.0.9:8080", PortName: "http", Ready: true, Meshed: true, Identity: web},
			{Address: "198.18.0.9:9001", PortName: "admin", Ready: true, Meshed: true, Identity: web},
			{Address: "198.18.0.10:8080", PortName: "http", Ready: true},
			{Address: "198.18.0.10:9001", PortName: "admin", Ready: true},
			{Address: "198.18.0.11:8080", PortName: "http", Ready: false},
		},
	})
	tests := []struct{ authority, want string }{
		{"10.96.0.10:80", "exists=true service=db.default protocol=HTTP1: 198.18.0.10:8080@db.default meshed=false , 198.18.0.9:8080@db.default meshed=true " + web},
		{"10.96.0.10:9000", "exists=true service=db.default protocol=HTTP1: 198.18.0.10:9001@db.default meshed=false , 198.18.0.9:9001@db.default meshed=true " + web},
		{"10.96.0.10:81", "exists=false service= protocol=PROTOCOL_UNSPECIFIED: "},
		{"198.18.0.9:8080", "exists=true service=db.default protocol=HTTP1: 198.18.0.9:8080@db.default meshed=true " + web},
		// The pod on a port no service names: still that pod.
		{"198.18.0.9:7000", "exists=true service=db.default protocol=PROTOCOL_UNSPECIFIED: 198.18.0.9:7000@db.default meshed=true " + web},
		// Not ready, but the client chose it.
		{"198.18.0.11:8080", "exists=true service=db.default protocol=HTTP1: 198.18.0.11:8080@db.default meshed=false "},
		{"203.0.113.5:443", "exists=false service= protocol=PROTOCOL_UNSPECIFIED: "},
	}
	for _, tt := range tests {
		t.Run(tt.authority, func(t *testing.T) {
			got := recv(t, f.watch(t, tt.authority, "web-0"))
			if d := describeDest(got); d != tt.want {
				t.Errorf("got  %s\nwant %s", d, tt.want)
			}
			if got.GetAuthority() != tt.authority {
				t.Errorf("authority %q", got.GetAuthority())
			}
		})
	}

	// The snapshot follows changes: the cluster IP's endpoints update.
	st := f.watch(t, "10.96.0.10:80", "web-1")
	recv(t, st)
	f.store.UpsertEndpoint(config.Key("db", ""), config.Endpoint{Address: "198.18.0.12:8080", PortName: "http", Ready: true})
	if d := describeDest(recv(t, st)); !strings.Contains(d, "198.18.0.12:8080") {
		t.Errorf("after a new endpoint: %s", d)
	}
	// By name without a port, every ready endpoint of every port.
	if d := describeDest(recv(t, f.watch(t, "db", "web-2"))); strings.Count(d, "@db.default") != 5 {
		t.Errorf("by name: %s", d)
	}
	// By name with a port the service declares: that port's endpoints;
	// with another port, every endpoint again.
	if d := describeDest(recv(t, f.watch(t, "db.default.svc.cluster.local:9000", "web-3"))); strings.Count(d, "@db.default") != 2 || strings.Contains(d, ":8080@") {
		t.Errorf("by name and port 9000: %s", d)
	}
	if d := describeDest(recv(t, f.watch(t, "db:1234", "web-4"))); strings.Count(d, "@db.default") != 5 {
		t.Errorf("by name and an undeclared port: %s", d)
	}
}
