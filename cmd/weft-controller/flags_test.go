package main

import (
	"encoding/json"
	"io"
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
