package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"weft.dev/weft/internal/config/kube"
	"weft.dev/weft/internal/control/anchors"
	"weft.dev/weft/internal/control/controller"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/control/identity/tokenreview"
	"weft.dev/weft/internal/control/inject"
	"weft.dev/weft/internal/control/leader"
)

// kubeOptions are the flags of --source=kubernetes.
type kubeOptions struct {
	kubeconfig    string
	namespace     string
	watchNS       string
	webhookAddr   string
	webhookTLSDir string
	identityDir   string
	proxyImage    string
	pullPolicy    string
	proxyLogLevel string
	cpuRequest    string
	memRequest    string
	cpuLimit      string
	memLimit      string
	leaderElect   bool
	leaderID      string
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
}

func kubeFlags(fs *flag.FlagSet, o *kubeOptions) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file to reach the API server with --source=kubernetes; default: the in-cluster service account")
	fs.StringVar(&o.namespace, "namespace", "weft", "namespace the control plane runs in (its Service names the controller's serving certificate; it is never injected)")
	fs.StringVar(&o.watchNS, "watch-namespace", "", "watch only this namespace's objects; default: all namespaces")
	fs.StringVar(&o.webhookAddr, "webhook-addr", "", "listen address of the proxy injector's admission webhook (HTTPS); \"\" serves none")
	fs.StringVar(&o.webhookTLSDir, "webhook-tls-dir", "", "directory holding the webhook's serving certificate tls.crt and key tls.key (reloaded when they change)")
	fs.StringVar(&o.identityDir, "identity-dir", "", "directory holding the mesh's trust anchors ca.crt and the issuer's tls.crt and tls.key (the install's Secret); missing files: generated in memory")
	fs.StringVar(&o.proxyImage, "proxy-image", "", "image of the proxy the webhook injects (required with --webhook-addr)")
	fs.StringVar(&o.pullPolicy, "proxy-image-pull-policy", "", "pull policy of the injected proxy: Always, IfNotPresent or Never; default: Kubernetes decides")
	fs.StringVar(&o.proxyLogLevel, "proxy-log-level", "", "log level of injected proxies; default info")
	fs.StringVar(&o.cpuRequest, "proxy-cpu-request", "", "CPU request of the injected proxy, e.g. 100m")
	fs.StringVar(&o.memRequest, "proxy-memory-request", "", "memory request of the injected proxy, e.g. 64Mi")
	fs.StringVar(&o.cpuLimit, "proxy-cpu-limit", "", "CPU limit of the injected proxy")
	fs.StringVar(&o.memLimit, "proxy-memory-limit", "", "memory limit of the injected proxy")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect one leader among replicas with Lease weft-controller in --namespace: only the leader writes cluster state (the trust-anchor ConfigMaps); every replica serves proxies, the webhook and the HTTP API")
	fs.StringVar(&o.leaderID, "leader-elect-identity", "", "this replica's name in the Lease; default: the host (pod) name and a random suffix")
	fs.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", leader.DefaultLeaseDuration, "how long the others wait before taking a lease its leader stopped renewing (a leader that stops cleanly releases it at once)")
	fs.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", leader.DefaultRenewDeadline, "how long the leader retries renewing before it stops leading")
	fs.DurationVar(&o.retryPeriod, "leader-elect-retry-period", leader.DefaultRetryPeriod, "how often replicas try to acquire or renew the lease")
}

// runKube runs the controller over the Kubernetes API: informers as the
// configuration, TokenReview as the proxies' proof of identity, and the
// injection webhook, and the trust anchors copied into every namespace.
func runKube(ctx context.Context, o options, token string, log *slog.Logger) error {
	k := o.kube
	if o.configFile != "" || o.joinTokenDir != "" {
		return errors.New("--config and --join-token-dir are for --source=local; on Kubernetes use kubectl apply, proxies prove their identity with their service account token")
	}
	rc, err := restConfig(k.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	issuer, err := kubeIssuer(o, log)
	if err != nil {
		return err
	}
	var hook *inject.Server
	if k.webhookAddr != "" {
		if hook, err = webhook(k, o.trustDomain, o.grpcAddr, client, log); err != nil {
			return err
		}
	}
	src := kube.New(kube.Options{Client: client, Dynamic: dyn, TrustDomain: o.trustDomain, Namespace: k.watchNS, Logger: log})
	svc := "weft-controller." + k.namespace
	c, err := controller.New(controller.Config{GRPCAddr: o.grpcAddr, HTTPAddr: o.httpAddr, Token: token, Source: src, Logger: log,
		DefaultInboundPolicy: o.defaultInbound, Issuer: issuer, TrustDomain: o.trustDomain, CertLifetime: o.certLifetime,
		Authenticator: tokenreview.New(client, tokenreview.Audience, o.trustDomain),
		ServingDNS:    []string{svc, svc + ".svc", svc + ".svc.cluster.local", "localhost"}})
	if err != nil {
		return err
	}
	if o.anchorsOut != "" {
		if err := os.WriteFile(o.anchorsOut, c.TrustAnchorsPEM(), 0o644); err != nil {
			return fmt.Errorf("--write-trust-anchors: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex // guards errs
	var errs []error
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
			cancel() // one part stopping stops all
		}()
	}
	start("watch the Kubernetes API", src.Run)
	// Writing cluster state is the leader's job; reading and serving is
	// every replica's.
	publish := anchors.New(client, c.TrustAnchorsPEM(), 0, log).OwnedBy(k.namespace).Run
	if k.leaderElect {
		el, err := elector(k, client, publish, log)
		if err != nil {
			return err
		}
		start("leader election", el.Run)
	} else {
		start("publish the trust anchors", publish)
	}
	if hook != nil {
		start("injection webhook", hook.Run)
	}
	start("controller", func(ctx context.Context) error {
		// Serve proxies only once the first full snapshot is built, so
		// none is told a service does not exist while caches fill.
		select {
		case <-src.Synced():
		case <-ctx.Done():
			return nil
		}
		return c.Run(ctx)
	})
	wg.Wait()
	return errors.Join(errs...)
}

// elector campaigns for the Lease and runs lead while it holds it.
func elector(k kubeOptions, client kubernetes.Interface, lead func(context.Context) error, log *slog.Logger) (*leader.Elector, error) {
	id := k.leaderID
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--leader-elect: the host name names this replica: %w; give --leader-elect-identity", err)
		}
		suffix := make([]byte, 4)
		if _, err := rand.Read(suffix); err != nil {
			return nil, fmt.Errorf("--leader-elect: %w", err)
		}
		id = host + "_" + hex.EncodeToString(suffix)
	}
	el, err := leader.New(leader.Config{Client: client, Namespace: k.namespace, Identity: id,
		LeaseDuration: k.leaseDuration, RenewDeadline: k.renewDeadline, RetryPeriod: k.retryPeriod,
		Lead: lead, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--leader-elect-*: %w", err)
	}
	return el, nil
}

// restConfig is the kubeconfig's, or the in-cluster one.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster Kubernetes config: %w; outside a cluster give --kubeconfig", err)
	}
	return rc, nil
}

// kubeIssuer loads the issuer from --identity-* files, else from
// --identity-dir, else returns nil (generated in memory).
func kubeIssuer(o options, log *slog.Logger) (*identity.Issuer, error) {
	if n := countSet(o.anchors, o.issuerCert, o.issuerKey); n == 3 {
		iss, err := identity.LoadIssuerFiles(o.anchors, o.issuerCert, o.issuerKey)
		if err != nil {
			return nil, fmt.Errorf("--identity-*: %w", err)
		}
		return iss, nil
	} else if n != 0 {
		return nil, errors.New("give all of --identity-trust-anchors, --identity-issuer-cert and --identity-issuer-key, or none")
	}
	dir := o.kube.identityDir
	if dir != "" {
		files := []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, corev1.TLSCertKey), filepath.Join(dir, corev1.TLSPrivateKeyKey)}
		missing := 0
		for _, f := range files {
			if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
				missing++
			}
		}
		switch missing {
		case 0:
			iss, err := identity.LoadIssuerFiles(files[0], files[1], files[2])
			if err != nil {
				return nil, fmt.Errorf("--identity-dir %s: %w", dir, err)
			}
			return iss, nil
		case len(files):
		default:
			return nil, fmt.Errorf("--identity-dir %s: want all of ca.crt, tls.crt and tls.key or none", dir)
		}
	}
	log.Warn("no issuer in --identity-dir: trust anchor and issuer generated in memory; proxies need the anchors from --write-trust-anchors, new ones after every restart")
	return nil, nil
}

// controllerAddr is the address injected proxies dial: the controller's
// Service in its namespace, on the port of --grpc-addr (the install's
// Service port equals its container port, so the two agree).
func controllerAddr(namespace, grpcAddr string) (string, error) {
	_, port, err := net.SplitHostPort(grpcAddr)
	if err != nil {
		return "", fmt.Errorf("--grpc-addr %q: %w; give HOST:PORT, e.g. 0.0.0.0:8086", grpcAddr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("--grpc-addr %q: port %q is not a number from 1 to 65535 (proxies need the port to dial)", grpcAddr, port)
	}
	return net.JoinHostPort("weft-controller."+namespace+".svc.cluster.local", port), nil
}

// webhook builds the injection webhook's server.
func webhook(k kubeOptions, trustDomain, grpcAddr string, client kubernetes.Interface, log *slog.Logger) (*inject.Server, error) {
	if k.proxyImage == "" {
		return nil, errors.New("--webhook-addr needs --proxy-image: the image of the proxy to inject")
	}
	if k.webhookTLSDir == "" {
		return nil, errors.New("--webhook-addr needs --webhook-tls-dir: the directory of the webhook's tls.crt and tls.key")
	}
	switch corev1.PullPolicy(k.pullPolicy) {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, fmt.Errorf("--proxy-image-pull-policy %q: want Always, IfNotPresent or Never", k.pullPolicy)
	}
	res, err := proxyResources(k)
	if err != nil {
		return nil, err
	}
	addr, err := controllerAddr(k.namespace, grpcAddr)
	if err != nil {
		return nil, err
	}
	h := &inject.Handler{
		Config: inject.Config{
			ProxyImage: k.proxyImage, ImagePullPolicy: corev1.PullPolicy(k.pullPolicy),
			Controller:  addr,
			TrustDomain: trustDomain, ControlPlaneNamespace: k.namespace, LogLevel: k.proxyLogLevel, Resources: res,
		},
		Namespaces: func(ctx context.Context, name string) (*corev1.Namespace, error) {
			return client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		},
		Logger: log,
	}
	return inject.NewServer(k.webhookAddr, filepath.Join(k.webhookTLSDir, corev1.TLSCertKey),
		filepath.Join(k.webhookTLSDir, corev1.TLSPrivateKeyKey), h, log), nil
}

// proxyResources parses the --proxy-* resource flags.
func proxyResources(k kubeOptions) (corev1.ResourceRequirements, error) {
	var r corev1.ResourceRequirements
	for _, q := range []struct {
		flag, val string
		list      *corev1.ResourceList
		name      corev1.ResourceName
	}{
		{"--proxy-cpu-request", k.cpuRequest, &r.Requests, corev1.ResourceCPU},
		{"--proxy-memory-request", k.memRequest, &r.Requests, corev1.ResourceMemory},
		{"--proxy-cpu-limit", k.cpuLimit, &r.Limits, corev1.ResourceCPU},
		{"--proxy-memory-limit", k.memLimit, &r.Limits, corev1.ResourceMemory},
	} {
		if q.val == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.val)
		if err != nil {
			return r, fmt.Errorf("%s %q: %w; give a quantity like 100m or 64Mi", q.flag, q.val, err)
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.name] = v
	}
	return r, nil
}
