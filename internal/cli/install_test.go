package cli

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/install"
)

// fixedCerts makes `weft install` output deterministic.
func fixedCerts(string, string, string, string, string) (*install.Certs, error) {
	pemOf := func(typ, body string) []byte {
		return []byte("-----BEGIN " + typ + "-----\n" + body + "\n-----END " + typ + "-----\n")
	}
	return &install.Certs{
		TrustAnchorsPEM: pemOf("CERTIFICATE", "ANCHOR"),
		IssuerCertPEM:   pemOf("CERTIFICATE", "ISSUER"),
		IssuerKeyPEM:    pemOf("PRIVATE KEY", "ISSUERKEY"),
		WebhookCAPEM:    pemOf("CERTIFICATE", "WEBHOOKCA"),
		WebhookCertPEM:  pemOf("CERTIFICATE", "WEBHOOK"),
		WebhookKeyPEM:   pemOf("PRIVATE KEY", "WEBHOOKKEY"),
		APIToken:        "fixed-token",
	}, nil
}

func TestInstallGolden(t *testing.T) {
	generateCerts = fixedCerts
	t.Cleanup(func() { generateCerts = install.GenerateCerts })
	tests := []struct {
		golden string
		args   []string
	}{
		{"install.golden", []string{"install", "--image-tag", "v0.1.0"}},
		{"install_ha.golden", []string{"install", "--image-tag", "v0.1.0", "--ha", "--registry", "registry.example.test/weft/",
			"--image-pull-policy", "Never", "--log-level", "debug", "--default-inbound-policy", "all-authenticated",
			"--proxy-cpu-request", "100m", "--controller-memory-limit", "1Gi"}},
		{"install_crds.golden", []string{"install", "--crds", "--skip-gateway-api"}},
		{"uninstall.golden", []string{"uninstall"}},
		{"inject_deployment.golden", []string{"inject", "--image-tag", "v0.1.0", "testdata/inject_deployment.yaml"}},
		{"inject_job.golden", []string{"inject", "--image-tag", "v0.1.0", "--image-pull-policy", "Never", "testdata/inject_job.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			golden(t, tt.golden, stdout)
			// Same input, same output.
			again, _, _ := runCLI(t, tt.args...)
			if again != stdout {
				t.Error("a second run printed something else")
			}
		})
	}
}

func TestInstallCRDsIncludeGatewayAPI(t *testing.T) {
	all, stderr, code := runCLI(t, "install", "--crds")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	skipped, _, _ := runCLI(t, "install", "--crds", "--skip-gateway-api", "--skip-smi")
	for _, name := range []string{"httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io", "trafficsplits.split.smi-spec.io"} {
		if !strings.Contains(all, "name: "+name+"\n") {
			t.Errorf("weft install --crds lacks %s", name)
		}
		if strings.Contains(skipped, "name: "+name+"\n") {
			t.Errorf("--skip-gateway-api --skip-smi still prints %s", name)
		}
	}
	if !strings.Contains(all, "gateway.networking.k8s.io/bundle-version: v1.6.3") {
		t.Error("the Gateway API CRDs are not the v1.6.3 release")
	}
	js, _, code := runCLI(t, "install", "--crds", "-o", "json")
	if code != 0 || !strings.HasPrefix(js, "{") || !strings.Contains(js, `"kind": "List"`) {
		t.Errorf("-o json: exit %d, output starts %.40q", code, js)
	}
}

func TestInstallErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"install", "--image-tag", "v1", "--default-inbound-policy", "open"}, "unknown default inbound policy \"open\""},
		{[]string{"install", "--image-tag", "v1", "-o", "toml"}, "use yaml or json"},
		{[]string{"install", "--image-tag", "v1", "--proxy-memory-request", "lots"}, "is not a quantity"},
		{[]string{"install", "--image-tag", "v1", "--identity-trust-anchors-file", "x"}, "give all three"},
		{[]string{"inject", "--image-tag", "v1", "testdata/missing.yaml"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, code := runCLI(t, tt.args...)
			if code == 0 && tt.want != "" {
				t.Fatalf("exit 0, want an error containing %q", tt.want)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want %q", stderr, tt.want)
			}
		})
	}
}

func TestInjectReport(t *testing.T) {
	_, stderr, code := runCLI(t, "inject", "--image-tag", "v1", "testdata/inject_job.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"job/migrate injected", "cronjob/report injected", "pod/node-agent skipped: pod uses the host's network"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}

// FuzzInjectManifest checks any input is injected or refused without a
// panic, and that injecting the output again changes nothing.
func FuzzInjectManifest(f *testing.F) {
	for _, s := range []string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: b}]}\n",
		"kind: Deployment\nspec: {template: {spec: {containers: []}}}\n---\nkind: Service\n",
		"kind: CronJob\nspec: {jobTemplate: 3}\n", "---\n---\n", "kind: List\n", "a: [",
	} {
		f.Add(s)
	}
	cfg := inject.Config{ProxyImage: "example.test/weft-proxy:v1", Force: true}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := injectManifest([]byte(in), cfg, func(string) {})
		if err != nil {
			return
		}
		again, err := injectManifest([]byte(out), cfg, func(string) {})
		if err != nil {
			t.Fatalf("injected output does not inject again: %v\n%s", err, out)
		}
		if again != out {
			t.Fatalf("second injection changed the output:\n%s\n---- then ----\n%s", out, again)
		}
	})
}

// TestInjectOutputDecodes decodes every injected document strictly with
// the Kubernetes types: what weft inject prints, kubectl accepts.
func TestInjectOutputDecodes(t *testing.T) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	dec := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	for _, in := range []string{"testdata/inject_deployment.yaml", "testdata/inject_job.yaml"} {
		out, stderr, code := runCLI(t, "inject", "--image-tag", "v1", in)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", in, code, stderr)
		}
		for i, doc := range docSeparator.Split(out, -1) {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", in, i+1, err)
			}
			if _, _, err := dec.Decode(js, nil, nil); err != nil {
				t.Errorf("%s document %d does not decode: %v", in, i+1, err)
			}
		}
	}
}
