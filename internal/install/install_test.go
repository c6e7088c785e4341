package install

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"weft.dev/weft/internal/control/identity"
)

// FixedCerts are placeholder certificates for deterministic output.
var fixedCerts = &Certs{
	TrustAnchorsPEM: []byte("-----BEGIN CERTIFICATE-----\nANCHOR\n-----END CERTIFICATE-----\n"),
	IssuerCertPEM:   []byte("-----BEGIN CERTIFICATE-----\nISSUER\n-----END CERTIFICATE-----\n"),
	IssuerKeyPEM:    []byte("-----BEGIN PRIVATE KEY-----\nISSUERKEY\n-----END PRIVATE KEY-----\n"),
	WebhookCAPEM:    []byte("-----BEGIN CERTIFICATE-----\nWEBHOOKCA\n-----END CERTIFICATE-----\n"),
	WebhookCertPEM:  []byte("-----BEGIN CERTIFICATE-----\nWEBHOOK\n-----END CERTIFICATE-----\n"),
	WebhookKeyPEM:   []byte("-----BEGIN PRIVATE KEY-----\nWEBHOOKKEY\n-----END PRIVATE KEY-----\n"),
	APIToken:        "token",
}

func scheme(t *testing.T) runtime.Decoder {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme, policyv1.AddToScheme, admissionregistrationv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}

// TestControlPlaneObjectsDecode decodes every object strictly with the
// Kubernetes types: a misspelt field fails here, not on kubectl apply.
func TestControlPlaneObjectsDecode(t *testing.T) {
	dec := scheme(t)
	for _, ha := range []bool{false, true} {
		objs, err := ControlPlane(Options{ImageTag: "v1", HA: ha, Certs: fixedCerts})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, o := range objs {
			b, _ := json.Marshal(o)
			got, _, err := dec.Decode(b, nil, nil)
			if err != nil {
				t.Errorf("%s %s: %v", o.Kind(), o.Name(), err)
				continue
			}
			kinds = append(kinds, o.Kind())
			switch v := got.(type) {
			case *appsv1.Deployment:
				want := int32(1)
				if ha {
					want = 3
				}
				if *v.Spec.Replicas != want {
					t.Errorf("ha=%v: %d replicas, want %d", ha, *v.Spec.Replicas, want)
				}
				if ha != (v.Spec.Template.Spec.Affinity != nil) {
					t.Errorf("ha=%v: affinity %v", ha, v.Spec.Template.Spec.Affinity)
				}
			case *admissionregistrationv1.MutatingWebhookConfiguration:
				want := admissionregistrationv1.Ignore
				if ha {
					want = admissionregistrationv1.Fail
				}
				for _, w := range v.Webhooks {
					if *w.FailurePolicy != want {
						t.Errorf("ha=%v: webhook %s failurePolicy %s, want %s", ha, w.Name, *w.FailurePolicy, want)
					}
					if !bytes.Equal(w.ClientConfig.CABundle, fixedCerts.WebhookCAPEM) {
						t.Errorf("webhook %s caBundle is not the webhook CA", w.Name)
					}
				}
			}
		}
		hasPDB := strings.Contains(strings.Join(kinds, ","), "PodDisruptionBudget")
		if hasPDB != ha {
			t.Errorf("ha=%v: PodDisruptionBudget present=%v", ha, hasPDB)
		}
	}
}

func TestControlPlaneRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no tag", Options{Certs: fixedCerts}, "--image-tag"},
		{"policy", Options{ImageTag: "v1", Certs: fixedCerts, DefaultInboundPolicy: "open"}, "--default-inbound-policy"},
		{"log level", Options{ImageTag: "v1", Certs: fixedCerts, LogLevel: "loud"}, "--log-level"},
		{"pull policy", Options{ImageTag: "v1", Certs: fixedCerts, ImagePullPolicy: "Sometimes"}, "--image-pull-policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ControlPlane(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestGenerateCerts(t *testing.T) {
	c, err := GenerateCerts("cluster.local", "weft", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadIssuer(c.TrustAnchorsPEM, c.IssuerCertPEM, c.IssuerKeyPEM); err != nil {
		t.Errorf("generated issuer does not load: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.WebhookCAPEM) {
		t.Fatal("webhook CA does not parse")
	}
	blk, _ := pem.Decode(c.WebhookCertPEM)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "weft-controller.weft.svc"}); err != nil {
		t.Errorf("webhook certificate does not verify for the Service name: %v", err)
	}
	if len(c.APIToken) != 64 {
		t.Errorf("API token %q, want 64 hex digits", c.APIToken)
	}

	// Given files are used as they are.
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "issuer.crt"), filepath.Join(dir, "issuer.key")}
	for i, b := range [][]byte{c.TrustAnchorsPEM, c.IssuerCertPEM, c.IssuerKeyPEM} {
		if err := os.WriteFile(paths[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c2, err := GenerateCerts("cluster.local", "weft", paths[0], paths[1], paths[2])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c2.IssuerKeyPEM, c.IssuerKeyPEM) || !bytes.Equal(c2.TrustAnchorsPEM, c.TrustAnchorsPEM) {
		t.Error("given identity files were not used")
	}
	if _, err := GenerateCerts("cluster.local", "weft", paths[0], "", ""); err == nil || !strings.Contains(err.Error(), "all three") {
		t.Errorf("one of three files: got %v, want an error asking for all three", err)
	}
	if _, err := GenerateCerts("cluster.local", "weft", paths[0], paths[2], paths[1]); err == nil {
		t.Error("swapped issuer certificate and key: got no error")
	}
}

func TestUninstallCoversInstall(t *testing.T) {
	objs, err := ControlPlane(Options{ImageTag: "v1", HA: true, Certs: fixedCerts})
	if err != nil {
		t.Fatal(err)
	}
	// The cluster says weft install --crds created the Gateway API and SMI
	// CRDs too (they carry PartOfLabel).
	crds, err := CRDs(CRDOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var labelled []string
	for _, c := range crds {
		md := c["metadata"].(map[string]any)
		if md["labels"].(map[string]any)[PartOfLabel] != "weft" {
			t.Errorf("CRD %s lacks %s: weft", c.Name(), PartOfLabel)
		}
		labelled = append(labelled, c.Name())
	}
	objs = append(objs, crds...)
	del, err := Uninstall("", labelled)
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]bool{}
	for _, o := range del {
		deleted[o.Kind()+"/"+o.Name()] = true
	}
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		if md["namespace"] == DefaultNamespace && deleted["Namespace/"+DefaultNamespace] {
			continue // deleted with the namespace
		}
		if !deleted[o.Kind()+"/"+o.Name()] {
			t.Errorf("uninstall leaves %s %s", o.Kind(), o.Name())
		}
	}
	if del[0].Kind() != "MutatingWebhookConfiguration" || del[len(del)-1].Kind() != "Namespace" {
		t.Errorf("uninstall order %s ... %s, want the webhook first and the namespace last", del[0].Kind(), del[len(del)-1].Kind())
	}
}

func TestWriteJSONList(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []Object{{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "x"}}}, "json", ""); err != nil {
		t.Fatal(err)
	}
	var list corev1.List
	if err := json.Unmarshal(b.Bytes(), &list); err != nil || list.Kind != "List" || len(list.Items) != 1 {
		t.Errorf("got %s (%v), want a v1 List of one item", b.String(), err)
	}
	if err := Write(&b, nil, "toml", ""); err == nil || !strings.Contains(err.Error(), "use yaml or json") {
		t.Errorf("format toml: got %v", err)
	}
}
