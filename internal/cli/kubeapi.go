package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"weft.dev/weft/internal/cli/ctlapi"
	"weft.dev/weft/internal/install"
)

// This file reaches the controller's HTTP API on a cluster, as `kubectl
// port-forward` does: through the API server to a ready controller pod's
// http port, with the API token of the weft-api-token Secret. Reading that
// Secret is the authorization: only who may read Secrets in the control
// plane's namespace may use the API (which is read-only on Kubernetes).

// kubeController is a port-forward to the controller and a client over it.
type kubeController struct {
	client *ctlapi.Client
	pod    string
	stop   func()
}

// dialKubeController opens a port-forward to a ready controller pod of
// namespace ns. Close it with stop.
func dialKubeController(ctx context.Context, cfg *rest.Config, ns string) (*kubeController, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, install.APITokenSecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the controller's API token (Secret %s/%s): %w; is Weft installed in namespace %s?",
			ns, install.APITokenSecret, err, ns)
	}
	token := strings.TrimSpace(string(sec.Data["token"]))
	if token == "" {
		return nil, fmt.Errorf("secret %s/%s has no token", ns, install.APITokenSecret)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + install.ControllerName})
	if err != nil {
		return nil, fmt.Errorf("list controller pods in %s: %w", ns, err)
	}
	pod := ""
	for _, p := range pods.Items {
		if podReady(&p) {
			pod = p.Name
			break
		}
	}
	if pod == "" {
		return nil, fmt.Errorf("no ready %s pod in namespace %s (found %d); see kubectl -n %s get pods", install.ControllerName, ns, len(pods.Items), ns)
	}
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward transport: %w", err)
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	stopCh, ready := make(chan struct{}), make(chan struct{})
	var errOut strings.Builder
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(install.HTTPPort)}, stopCh, ready, io.Discard, &errOut)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s: %w", ns, pod, err)
	}
	failed := make(chan error, 1)
	go func() { failed <- pf.ForwardPorts() }()
	stop := func() { close(stopCh) }
	select {
	case <-ready:
	case err := <-failed:
		return nil, fmt.Errorf("port-forward to %s/%s: %w %s", ns, pod, err, errOut.String())
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("port-forward to %s/%s: %w", ns, pod, ctx.Err())
	case <-time.After(30 * time.Second):
		stop()
		return nil, fmt.Errorf("port-forward to %s/%s: not ready after 30s", ns, pod)
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		stop()
		return nil, errors.Join(errors.New("port-forward: no local port"), err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	return &kubeController{client: ctlapi.New(addr, token, nil), pod: pod, stop: stop}, nil
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kubeTarget is the cluster the commands reach and where Weft's control
// plane runs in it.
type kubeTarget struct {
	kubeconfig, context, namespace string
}

// register adds the root's cluster flags.
func (k *kubeTarget) register(root *cobra.Command) {
	fl := root.PersistentFlags()
	fl.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster (default $KUBECONFIG or "+filepath.Join("~", clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)+")")
	fl.StringVar(&k.context, "context", "", "kubeconfig context (default: its current context)")
	fl.StringVar(&k.namespace, "control-plane-namespace", install.DefaultNamespace, "namespace of Weft's control plane in the cluster")
}

// atHand reports whether a kubeconfig is given or found: --kubeconfig,
// --context, $KUBECONFIG or ~/.kube/config.
func (k *kubeTarget) atHand() bool {
	if k.kubeconfig != "" || k.context != "" || os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "" {
		return true
	}
	_, err := os.Stat(clientcmd.RecommendedHomeFile)
	return err == nil
}

// restConfig loads the client configuration as kubectl does.
func (k *kubeTarget) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w; give --kubeconfig or --context, or set KUBECONFIG", err)
	}
	cfg.WarningHandler = rest.NoWarnings{}
	return cfg, nil
}

// kubeClient returns a client of the cluster's controller, over a
// port-forward closed when the command ends.
func (e *env) kubeClient() (*ctlapi.Client, error) {
	cfg, err := e.kube.restConfig()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc, err := dialKubeController(ctx, cfg, e.kube.namespace)
	if err != nil {
		return nil, err
	}
	e.cleanups = append(e.cleanups, kc.stop)
	return kc.client, nil
}

// labelledCRDs lists the CRDs of the cluster that weft install --crds
// created (install.PartOfLabel: weft).
func (e *env) labelledCRDs(ctx context.Context) ([]string, error) {
	cfg, err := e.kube.restConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 30 * time.Second
	c, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	list, err := c.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{LabelSelector: install.PartOfLabel + "=weft"})
	if err != nil {
		return nil, fmt.Errorf("list CRDs: %w", err)
	}
	var out []string
	for _, crd := range list.Items {
		out = append(out, crd.Name)
	}
	return out, nil
}
