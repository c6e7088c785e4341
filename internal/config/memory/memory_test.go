package memory

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/split"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tsResource(name, root string, backends ...split.Backend) config.Resource {
	return config.Resource{
		APIVersion: split.Group + "/v1alpha4", Kind: split.Kind, Name: name, Namespace: "default",
		Spec: &split.TrafficSplit{Service: root, Backends: backends},
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestVersionAndChanged(t *testing.T) {
	s := New("")
	first := s.Snapshot()
	if got, want := first.TrustDomain, config.DefaultTrustDomain; got != want {
		t.Fatalf("trust domain: got %q, want %q", got, want)
	}
	ch := s.Changed()
	s.SetService(config.Service{Name: "api"})
	if !closed(ch) {
		t.Fatal("Changed channel not closed after SetService")
	}
	second := s.Snapshot()
	if got, want := second.Version, first.Version+1; got != want {
		t.Fatalf("version: got %d, want %d", got, want)
	}
	if _, ok := first.Services[config.Key("api", "default")]; ok {
		t.Fatal("old snapshot was modified (copy on write broken)")
	}
	// A no-op change publishes nothing.
	ch = s.Changed()
	s.SetService(config.Service{Name: "api", Namespace: "default"})
	if closed(ch) {
		t.Fatal("Changed closed for an unchanged service")
	}
	if got, want := s.Snapshot().Version, second.Version; got != want {
		t.Fatalf("version after no-op: got %d, want %d", got, want)
	}
}

func TestEndpoints(t *testing.T) {
	s := New("")
	key := config.Key("api", "default")
	s.UpsertEndpoint(key, config.Endpoint{Address: "127.0.0.1:9002", Labels: map[string]string{"version": "v2"}})
	s.UpsertEndpoint(key, config.Endpoint{Address: "127.0.0.1:9001"})
	before := s.Snapshot()
	s.SetEndpointReady(key, "127.0.0.1:9001", true)
	svc := s.Snapshot().Services[key]
	if got, want := len(svc.Endpoints), 2; got != want {
		t.Fatalf("endpoints: got %d, want %d", got, want)
	}
	if got, want := svc.Endpoints[0].Address, "127.0.0.1:9001"; got != want {
		t.Fatalf("first endpoint: got %s, want %s (sorted by address)", got, want)
	}
	if !svc.Endpoints[0].Ready {
		t.Fatal("endpoint not ready after SetEndpointReady")
	}
	if before.Services[key].Endpoints[0].Ready {
		t.Fatal("SetEndpointReady changed an older snapshot")
	}
	// SetService without endpoints keeps them; with an empty slice drops them.
	s.SetService(config.Service{Name: "api", Protocol: config.ProtocolGRPC})
	if got, want := len(s.Snapshot().Services[key].Endpoints), 2; got != want {
		t.Fatalf("endpoints after SetService(nil endpoints): got %d, want %d", got, want)
	}
	if got, want := s.Snapshot().Services[key].Protocol, config.ProtocolGRPC; got != want {
		t.Fatalf("protocol: got %q, want %q", got, want)
	}
	s.RemoveEndpoint(key, "127.0.0.1:9002")
	if got, want := len(s.Snapshot().Services[key].Endpoints), 1; got != want {
		t.Fatalf("endpoints after remove: got %d, want %d", got, want)
	}
	s.SetService(config.Service{Name: "api", Endpoints: []config.Endpoint{}})
	if got, want := len(s.Snapshot().Services[key].Endpoints), 0; got != want {
		t.Fatalf("endpoints after SetService(empty): got %d, want %d", got, want)
	}
	s.RemoveService(key)
	if _, ok := s.Snapshot().Services[key]; ok {
		t.Fatal("service still present after RemoveService")
	}
}

func TestProxies(t *testing.T) {
	s := New("")
	s.SetProxy(config.Proxy{ID: "web-0", Service: "web", Ports: []config.InboundPort{{Port: 9000}}})
	p := s.Snapshot().Proxies["web-0"]
	if p == nil || p.Namespace != "default" {
		t.Fatalf("proxy: got %+v, want web-0 in namespace default", p)
	}
	s.RemoveProxy("web-0")
	if _, ok := s.Snapshot().Proxies["web-0"]; ok {
		t.Fatal("proxy still present after RemoveProxy")
	}
}

func TestApply(t *testing.T) {
	s := New("")
	for _, n := range []string{"mon-service", "mon-service-v1", "mon-service-v2"} {
		s.SetService(config.Service{Name: n})
	}
	ts := tsResource("canary", "mon-service", split.Backend{Service: "mon-service-v1", Weight: 95}, split.Backend{Service: "mon-service-v2", Weight: 5})
	steps := []struct {
		name string
		rs   []config.Resource
		want string
	}{
		{"create", []config.Resource{ts}, Created},
		{"same again", []config.Resource{ts}, Unchanged},
		{"new weights", []config.Resource{tsResource("canary", "mon-service", split.Backend{Service: "mon-service-v1", Weight: 50}, split.Backend{Service: "mon-service-v2", Weight: 50})}, Configured},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			changes, err := s.Apply(st.rs)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := changes[0].Action, st.want; got != want {
				t.Fatalf("action: got %s, want %s", got, want)
			}
			if got, want := changes[0].ID, "TrafficSplit/default/canary"; got != want {
				t.Fatalf("id: got %s, want %s", got, want)
			}
		})
	}
	if got, want := len(s.Snapshot().Resources), 1; got != want {
		t.Fatalf("resources: got %d, want %d", got, want)
	}
	if got, want := s.Snapshot().Resources[0].Spec.(*split.TrafficSplit).Backends[0].Weight, uint32(50); got != want {
		t.Fatalf("weight after configure: got %d, want %d", got, want)
	}
	if err := s.Delete("TrafficSplit/default/canary"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("TrafficSplit/default/canary"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
}

func TestApplyRefused(t *testing.T) {
	s := New("")
	for _, n := range []string{"web", "web-v1", "web-v2"} {
		s.SetService(config.Service{Name: n})
	}
	good := tsResource("ok", "web", split.Backend{Service: "web-v1", Weight: 1})
	if _, err := s.Apply([]config.Resource{good}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rs   []config.Resource
		want []string
	}{
		{"unknown backend", []config.Resource{tsResource("a", "web", split.Backend{Service: "web-v3", Weight: 1})},
			[]string{`TrafficSplit/default/a: spec.backends[0].service: service "web-v3" not found in namespace default (services: web, web-v1, web-v2)`}},
		{"unknown root", []config.Resource{tsResource("a", "nope", split.Backend{Service: "web-v1", Weight: 1})},
			[]string{`TrafficSplit/default/a: spec.service: service "nope" not found`}},
		{"second split of one service", []config.Resource{tsResource("b", "web", split.Backend{Service: "web-v2", Weight: 1})},
			[]string{`TrafficSplit/default/b: spec.service: service "web" is already split by TrafficSplit/default/ok`}},
		{"duplicate in batch, all refused", []config.Resource{
			tsResource("c", "web-v1", split.Backend{Service: "web-v2", Weight: 1}),
			tsResource("c", "web-v1", split.Backend{Service: "web-v2", Weight: 1})},
			[]string{"TrafficSplit/default/c: appears twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			version := s.Snapshot().Version
			_, err := s.Apply(tt.rs)
			if err == nil {
				t.Fatal("got no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
			if got, want := s.Snapshot().Version, version; got != want {
				t.Errorf("version: got %d, want %d (a refused apply must change nothing)", got, want)
			}
		})
	}
}

func TestPlanChangesNothing(t *testing.T) {
	s := New("")
	s.SetService(config.Service{Name: "web"})
	v := s.Snapshot().Version
	changes, err := s.Plan([]config.Resource{tsResource("a", "web", split.Backend{Service: "web", Weight: 1})})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changes[0].Action, Created; got != want {
		t.Fatalf("action: got %s, want %s", got, want)
	}
	if got := s.Snapshot().Version; got != v {
		t.Fatalf("version: got %d, want %d", got, v)
	}
}

func TestConcurrentWriters(t *testing.T) {
	s := New("")
	key := config.Key("api", "default")
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ch := s.Changed()
			if len(s.Snapshot().Services) > 0 && len(s.Snapshot().Services[key].Endpoints) == 50 {
				return
			}
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
				t.Error("reader starved: no change seen")
				return
			}
		}
	}()
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.UpsertEndpoint(key, config.Endpoint{Address: "127.0.0.1:" + string(rune('0'+i/10)) + string(rune('0'+i%10))})
		}()
	}
	wg.Wait()
	<-done
	if got, want := s.Snapshot().Version, uint64(51); got != want {
		t.Fatalf("version: got %d, want %d", got, want)
	}
}
