package cli

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"weft.dev/weft/deploy"
	"weft.dev/weft/internal/install"
)

// generateCerts makes the certificates of `weft install`; tests replace it
// to get fixed output.
var generateCerts = install.GenerateCerts

// installFlags are the flags `weft install` and `weft inject` share.
type installFlags struct {
	namespace, registry, imageTag, pullPolicy string
	logLevel, defaultPolicy, trustDomain      string
	ha                                        bool
	controllerCPU, controllerMem              string
	controllerMemLimit                        string
	proxyCPU, proxyMem, proxyMemLimit         string
}

func (f *installFlags) register(cmd *cobra.Command, withController bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.namespace, "namespace", install.DefaultNamespace, "namespace of the control plane")
	fl.StringVar(&f.registry, "registry", install.DefaultRegistry, "registry of the weft-proxy and weft-controller images")
	fl.StringVar(&f.imageTag, "image-tag", imageTag(version()), "tag of the images (this weft's version unless given)")
	fl.StringVar(&f.pullPolicy, "image-pull-policy", string(corev1.PullIfNotPresent), "image pull policy: Always, IfNotPresent or Never (Never for images imported into the nodes' runtime)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level of the controller and the proxies: debug, info, warn or error")
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "trust domain of the mesh's SPIFFE IDs")
	fl.StringVar(&f.proxyCPU, "proxy-cpu-request", "50m", "CPU request of each proxy")
	fl.StringVar(&f.proxyMem, "proxy-memory-request", "32Mi", "memory request of each proxy")
	fl.StringVar(&f.proxyMemLimit, "proxy-memory-limit", "256Mi", "memory limit of each proxy (\"\" for none)")
	if !withController {
		return
	}
	fl.StringVar(&f.defaultPolicy, "default-inbound-policy", "all-unauthenticated", "what ports no Server selects allow: all-unauthenticated, all-authenticated, deny or audit")
	fl.BoolVar(&f.ha, "ha", false, "high availability: 3 controller replicas spread over nodes, a PodDisruptionBudget, and injection failurePolicy Fail (pods wait for the injector instead of starting without a proxy)")
	fl.StringVar(&f.controllerCPU, "controller-cpu-request", "100m", "CPU request of the controller")
	fl.StringVar(&f.controllerMem, "controller-memory-request", "64Mi", "memory request of the controller")
	fl.StringVar(&f.controllerMemLimit, "controller-memory-limit", "512Mi", "memory limit of the controller (\"\" for none)")
}

var badTagChar = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// imageTag turns a version into a valid image tag.
func imageTag(v string) string {
	t := badTagChar.ReplaceAllString(v, "-")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// resources builds requests and limits from flag values.
func resources(cpuReq, memReq, memLimit string) (*corev1.ResourceRequirements, error) {
	r := &corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		flag, v string
		list    corev1.ResourceList
		name    corev1.ResourceName
	}{
		{"cpu-request", cpuReq, r.Requests, corev1.ResourceCPU},
		{"memory-request", memReq, r.Requests, corev1.ResourceMemory},
		{"memory-limit", memLimit, r.Limits, corev1.ResourceMemory},
	} {
		if q.v == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.v)
		if err != nil {
			return nil, fmt.Errorf("--*-%s %q is not a quantity: write it like 100m or 64Mi", q.flag, q.v)
		}
		q.list[q.name] = v
	}
	return r, nil
}

func (f *installFlags) options(certs *install.Certs) (install.Options, error) {
	proxy, err := resources(f.proxyCPU, f.proxyMem, f.proxyMemLimit)
	if err != nil {
		return install.Options{}, fmt.Errorf("proxy resources: %w", err)
	}
	o := install.Options{
		Namespace: f.namespace, Registry: strings.TrimSuffix(f.registry, "/"), ImageTag: f.imageTag,
		ImagePullPolicy: corev1.PullPolicy(f.pullPolicy), HA: f.ha, LogLevel: f.logLevel,
		DefaultInboundPolicy: f.defaultPolicy, TrustDomain: f.trustDomain,
		ProxyResources: proxy, Certs: certs,
	}
	if f.controllerCPU != "" || f.controllerMem != "" || f.controllerMemLimit != "" {
		c, err := resources(f.controllerCPU, f.controllerMem, f.controllerMemLimit)
		if err != nil {
			return install.Options{}, fmt.Errorf("controller resources: %w", err)
		}
		o.ControllerResources = c
	}
	return o, nil
}

func (e *env) installCmd() *cobra.Command {
	var f installFlags
	var crds, skipGateway, skipSMI bool
	var output, anchorsFile, issuerCertFile, issuerKeyFile string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the Kubernetes manifests of Weft's CRDs (--crds) or control plane",
		Long: `Print the Kubernetes manifests of Weft, for kubectl:

  weft install --crds | kubectl apply --server-side -f -
  weft install | kubectl apply -f -

--crds prints the CustomResourceDefinitions: Weft's kinds (policy.weft.dev),
SMI TrafficSplit (split.smi-spec.io, v1alpha1 to v1alpha4) and Gateway API
HTTPRoute and GRPCRoute (` + deploy.GatewayAPIVersion + `, standard channel). Leave out the
last two with --skip-gateway-api and --skip-smi where another release is
installed. Apply with --server-side: the HTTPRoute CRD is larger than the
annotation client-side apply keeps.

Without --crds it prints the control plane in namespace weft: RBAC, the
controller Deployment and Service, the injector webhook, and Secrets holding
the mesh's trust anchor and issuer (generated unless the three
--identity-* files are given) and the webhook's serving certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if crds {
				objs, err := install.CRDs(install.CRDOptions{SkipGatewayAPI: skipGateway, SkipSMI: skipSMI})
				if err != nil {
					return err
				}
				return install.Write(e.stdout, objs, output, "Weft CustomResourceDefinitions: weft install --crds | kubectl apply --server-side -f -")
			}
			if output != "yaml" && output != "json" {
				return fmt.Errorf("--output %q is not supported: use yaml or json", output)
			}
			certs, err := generateCerts(f.trustDomain, f.namespace, anchorsFile, issuerCertFile, issuerKeyFile)
			if err != nil {
				return err
			}
			o, err := f.options(certs)
			if err != nil {
				return err
			}
			objs, err := install.ControlPlane(o)
			if err != nil {
				return err
			}
			return install.Write(e.stdout, objs, output, "Weft control plane: weft install | kubectl apply -f -")
		},
	}
	f.register(cmd, true)
	fl := cmd.Flags()
	fl.BoolVar(&crds, "crds", false, "print the CustomResourceDefinitions instead of the control plane")
	fl.BoolVar(&skipGateway, "skip-gateway-api", false, "with --crds: leave out the Gateway API HTTPRoute and GRPCRoute CRDs (already installed)")
	fl.BoolVar(&skipSMI, "skip-smi", false, "with --crds: leave out the SMI TrafficSplit CRD (already installed)")
	fl.StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	fl.StringVar(&anchorsFile, "identity-trust-anchors-file", "", "PEM file of the trust anchors (default: generate a new trust anchor)")
	fl.StringVar(&issuerCertFile, "identity-issuer-certificate-file", "", "PEM file of the issuer certificate, signed by a trust anchor")
	fl.StringVar(&issuerKeyFile, "identity-issuer-key-file", "", "PEM file of the issuer's private key")
	return cmd
}

func (e *env) uninstallCmd() *cobra.Command {
	var namespace, output string
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Print every Kubernetes object weft install created, for kubectl delete",
		Long: `Print every Kubernetes object weft install created, for:

  weft uninstall | kubectl delete -f -

It deletes the injector first, then the control plane, Weft's CRDs (and with
them every Weft resource) and the namespace. The weft-trust-anchors
ConfigMaps the controller copied into every namespace are owned by the
control plane's namespace: the garbage collector deletes them with it.

When a cluster is at hand (--kubeconfig, --context, $KUBECONFIG or
~/.kube/config), the Gateway API and SMI CRDs that weft install --crds
created (labelled app.kubernetes.io/part-of=weft) are listed too; CRDs
installed by other software, or with --skip-gateway-api / --skip-smi, stay.
Without a cluster only Weft's own CRDs are listed.

Injected pods keep their proxy until they are restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var installed []string
			if e.kube.atHand() {
				var err error
				if installed, err = e.labelledCRDs(cmd.Context()); err != nil {
					fmt.Fprintf(e.stderr, "weft uninstall: the cluster's CRDs were not read (%v): Gateway API and SMI CRDs are not listed\n", err)
				}
			}
			objs, err := install.Uninstall(namespace, installed)
			if err != nil {
				return err
			}
			return install.Write(e.stdout, objs, output, "Weft: weft uninstall | kubectl delete -f -")
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", install.DefaultNamespace, "namespace of the control plane")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}
