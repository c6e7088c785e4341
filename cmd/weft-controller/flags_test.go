package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"weft.dev/weft/internal/install"
)

// controllerArgs returns the arguments `weft install` gives the
// weft-controller container.
func controllerArgs(t *testing.T, ha bool) []string {
	t.Helper()
	certs, err := install.GenerateCerts("cluster.local", "weft", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := install.ControlPlane(install.Options{ImageTag: "v1", HA: ha, Certs: certs})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Kind() != "Deployment" {
			continue
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "controller" {
				var args []string
				if len(c.Command) > 1 {
					args = append(args, c.Command[1:]...)
				}
				return append(args, c.Args...)
			}
		}
	}
	t.Fatal("no weft-controller container in the install manifests")
	return nil
}

func TestInstallFlagsParse(t *testing.T) {
	for _, ha := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "ha"}[ha], func(t *testing.T) {
			args := controllerArgs(t, ha)
			var o options
			fs := newFlagSet(&o)
			fs.SetOutput(io.Discard)
			if err := fs.Parse(args); err != nil {
				t.Fatalf("install's args %q: %v", args, err)
			}
			if fs.NArg() != 0 {
				t.Fatalf("got leftover arguments %q", fs.Args())
			}
			if o.source != "kubernetes" || o.kube.namespace != "weft" || o.kube.webhookAddr == "" ||
				o.kube.webhookTLSDir == "" || o.kube.identityDir == "" || o.kube.proxyImage == "" || o.tokenFile == "" {
				t.Fatalf("got %+v, want the kubernetes source with webhook, identity dir, proxy image and token file", o)
			}
			if o.kube.leaderElect != ha {
				t.Fatalf("leader-elect: got %v, want %v", o.kube.leaderElect, ha)
			}
			if _, err := proxyResources(o.kube); err != nil {
				t.Fatalf("proxy resources: %v", err)
			}
			// The proxies the webhook injects dial what `weft inject`
			// writes: the Service's gRPC port.
			got, err := controllerAddr(o.kube.namespace, o.grpcAddr)
			if err != nil {
				t.Fatal(err)
			}
			ic, err := install.InjectConfig(install.Options{ImageTag: "v1"})
			if err != nil {
				t.Fatal(err)
			}
			if got != ic.Controller {
				t.Fatalf("injected controller address %q, weft inject writes %q", got, ic.Controller)
			}
		})
	}
}

func TestProxyResources(t *testing.T) {
	tests := []struct {
		name    string
		k       kubeOptions
		wantCPU string
		wantErr bool
	}{
		{"none", kubeOptions{}, "", false},
		{"cpu request", kubeOptions{cpuRequest: "100m", memLimit: "64Mi"}, "100m", false},
		{"bad quantity", kubeOptions{cpuRequest: "lots"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proxyResources(tt.k)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantCPU == "" {
				return
			}
			want := resource.MustParse(tt.wantCPU)
			if q := got.Requests.Cpu(); q.Cmp(want) != 0 {
				t.Fatalf("cpu request: got %s, want %s", q, tt.wantCPU)
			}
		})
	}
}

func TestControllerAddr(t *testing.T) {
	tests := []struct {
		grpcAddr, want, wantErr string
	}{
		{"0.0.0.0:8086", "weft-controller.mesh.svc.cluster.local:8086", ""},
		{":9443", "weft-controller.mesh.svc.cluster.local:9443", ""},
		{"[::]:7000", "weft-controller.mesh.svc.cluster.local:7000", ""},
		{"0.0.0.0", "", "--grpc-addr"},
		{"0.0.0.0:grpc", "", "is not a number"},
		{"0.0.0.0:0", "", "is not a number"},
	}
	for _, tt := range tests {
		got, err := controllerAddr("mesh", tt.grpcAddr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: got %q, %v; want an error containing %q", tt.grpcAddr, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.grpcAddr, got, err, tt.want)
		}
	}
}
