package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// config holds the command lines the configuration files go with.
type config struct {
	etcdArgs, apiserverArgs []string
	args                    map[string][]string
}

// writeConfig writes the certificates, kubeconfigs and configuration files, picks the ports and sets
// Kubeconfig, Config, Client and ContainerdSocket.
func (c *Cluster) writeConfig() (*config, error) {
	pki := c.path("pki")
	ca, err := newAuthority(pki)
	if err != nil {
		return nil, err
	}
	if err := writeServiceAccountKey(pki); err != nil {
		return nil, err
	}
	issue := func(s certSpec) (string, string, error) { return ca.issue(pki, s) }
	apiCert, apiKey, err := issue(certSpec{
		file: "apiserver", cn: "kube-apiserver", server: true,
		ips: []net.IP{net.ParseIP(APIServiceIP), net.ParseIP(NodeIP), net.IPv4(127, 0, 0, 1)},
		dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + ClusterDomain, "localhost"},
	})
	if err != nil {
		return nil, err
	}
	kubeletServingCert, kubeletServingKey, err := issue(certSpec{file: "kubelet-serving", cn: NodeName, server: true, ips: []net.IP{net.ParseIP(NodeIP)}, dns: []string{NodeName}})
	if err != nil {
		return nil, err
	}
	apiKubeletCert, apiKubeletKey, err := issue(certSpec{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}})
	if err != nil {
		return nil, err
	}
	caPath := filepath.Join(pki, "ca.crt")

	apiPort, err := freePort(NodeIP)
	if err != nil {
		return nil, err
	}
	server := "https://" + net.JoinHostPort(NodeIP, strconv.Itoa(apiPort))
	kubeconfig := func(name, cn string, orgs ...string) (string, error) {
		crt, key, err := issue(certSpec{file: name, cn: cn, orgs: orgs})
		if err != nil {
			return "", err
		}
		p := c.path("kubeconfig", name+".kubeconfig")
		return p, writeFile(p, []byte(fmt.Sprintf(kubeconfigTemplate, caPath, server, crt, key)), 0o600)
	}
	if c.Kubeconfig, err = kubeconfig("admin", "weft-test-admin", "system:masters"); err != nil {
		return nil, err
	}
	c.Config = &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: caPath, CertFile: filepath.Join(pki, "admin.crt"), KeyFile: filepath.Join(pki, "admin.key"),
		},
		QPS: 50, Burst: 100,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	kubeletKC, err := kubeconfig("kubelet", "system:node:"+NodeName, "system:nodes")
	if err != nil {
		return nil, err
	}
	cmKC, err := kubeconfig("controller-manager", "system:kube-controller-manager")
	if err != nil {
		return nil, err
	}
	schedKC, err := kubeconfig("scheduler", "system:kube-scheduler")
	if err != nil {
		return nil, err
	}
	proxyKC, err := kubeconfig("kube-proxy", "system:kube-proxy")
	if err != nil {
		return nil, err
	}

	ports := map[string]int{}
	for _, n := range []string{"etcd-client", "etcd-peer", "kubelet-healthz", "controller-manager", "scheduler", "proxy-healthz", "proxy-metrics"} {
		if ports[n], err = freePort("127.0.0.1"); err != nil {
			return nil, err
		}
	}
	if ports["kubelet"], err = freePort(NodeIP); err != nil {
		return nil, err
	}
	local := func(n string) string { return "127.0.0.1:" + strconv.Itoa(ports[n]) }
	etcdURL, peerURL := "http://"+local("etcd-client"), "http://"+local("etcd-peer")

	// containerd, with its state under Dir: the pods' network namespaces included.
	c.ContainerdSocket = c.path("containerd", "containerd.sock")
	cniConf := c.path("cni", "net.d")
	if err := writeFile(c.path("containerd", "config.toml"), []byte(fmt.Sprintf(containerdTemplate,
		c.path("containerd", "root"), c.path("containerd", "state"), c.ContainerdSocket, c.ContainerdSocket+".ttrpc",
		c.path("containerd", "opt"), PauseImage, c.path("containerd", "runc"), cniBinDir, cniConf)), 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(cniConf, "10-"+NetworkName+".conflist"), []byte(fmt.Sprintf(cniTemplate,
		NetworkName, BridgeName, PodCIDR, NodeIP, c.path("cni-ipam"))), 0o644); err != nil {
		return nil, err
	}

	// The kubelet: its cgroups under a root of the cluster's own, its kernel settings recorded
	// (Start) and restored (Stop), no image garbage collection or eviction (the imported images
	// cannot be pulled again).
	if err := makeCgroupRoot(c.cgroupRoot); err != nil {
		return nil, err
	}
	resolv := c.path("kubelet-config", "resolv.conf")
	if err := writeFile(resolv, []byte("# the test cluster's pods have no upstream resolvers\n"), 0o644); err != nil {
		return nil, err
	}
	kubeletConfig := c.path("kubelet-config", "kubelet.yaml")
	if err := writeFile(kubeletConfig, []byte(fmt.Sprintf(kubeletTemplate,
		NodeIP, ports["kubelet"], ports["kubelet-healthz"], caPath, kubeletServingCert, kubeletServingKey,
		c.cgroupRoot, DNSServiceIP, ClusterDomain, resolv, "unix://"+c.ContainerdSocket, c.path("pod-logs"))), 0o644); err != nil {
		return nil, err
	}
	proxyConfig := c.path("kube-proxy", "config.yaml")
	if err := writeFile(proxyConfig, []byte(fmt.Sprintf(proxyTemplate,
		proxyKC, NodeName, PodCIDR, local("proxy-healthz"), local("proxy-metrics"), NodeIP)), 0o644); err != nil {
		return nil, err
	}

	cfg := &config{args: map[string][]string{}}
	cfg.etcdArgs = []string{
		"--name=weft-test", "--data-dir=" + c.path("etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=weft-test=" + peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	}
	cfg.apiserverArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + NodeIP, "--advertise-address=" + NodeIP, "--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + c.path("apiserver-certs"),
		"--tls-cert-file=" + apiCert, "--tls-private-key-file=" + apiKey,
		"--client-ca-file=" + caPath,
		"--kubelet-client-certificate=" + apiKubeletCert, "--kubelet-client-key=" + apiKubeletKey,
		"--kubelet-certificate-authority=" + caPath,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc." + ClusterDomain,
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}
	cfg.args["kube-controller-manager"] = []string{
		"--kubeconfig=" + cmKC,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports["controller-manager"]),
		"--cert-dir=" + c.path("controller-manager-certs"),
		"--root-ca-file=" + caPath,
		"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
		"--use-service-account-credentials",
		"--cluster-signing-cert-file=" + caPath, "--cluster-signing-key-file=" + filepath.Join(pki, "ca.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--allocate-node-cidrs=false",
		"--flex-volume-plugin-dir=" + c.path("controller-manager-flexvolume"),
		"--leader-elect=false", "--profiling=false", "--v=1",
	}
	cfg.args["kube-scheduler"] = []string{
		"--kubeconfig=" + schedKC,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports["scheduler"]),
		"--cert-dir=" + c.path("scheduler-certs"),
		"--leader-elect=false", "--profiling=false", "--v=1",
	}
	cfg.args["kubelet"] = []string{
		"--config=" + kubeletConfig,
		"--kubeconfig=" + kubeletKC,
		"--root-dir=" + c.path("kubelet"),
		"--cert-dir=" + c.path("kubelet", "pki"),
		"--volume-plugin-dir=" + c.path("kubelet", "volume-plugins"),
		"--hostname-override=" + NodeName,
		"--node-ip=" + NodeIP,
		"--v=1",
	}
	cfg.args["kube-proxy"] = []string{"--config=" + proxyConfig, "--v=1"}
	return cfg, nil
}

// freePort returns a TCP port free on ip now.
func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %s: %w", ip, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func newGet(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

// killPID sends SIGKILL to a process by id.
func killPID(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	return nil
}

// kubeconfigTemplate: CA file, server, client certificate, client key.
const kubeconfigTemplate = `apiVersion: v1
kind: Config
clusters:
- name: weft-test
  cluster:
    certificate-authority: %s
    server: %s
users:
- name: weft-test
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: weft-test
  context:
    cluster: weft-test
    user: weft-test
current-context: weft-test
`

// containerdTemplate: root, state, socket, ttrpc socket, opt dir, sandbox image, runc's root, CNI
// bin dir, CNI conf dir. restrict_oom_score_adj: without CAP_SYS_RESOURCE in the bounding set runc
// cannot lower oom_score_adj and every sandbox fails.
const containerdTemplate = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`

// cniTemplate: network name, bridge, pod range, gateway, host-local's data directory.
const cniTemplate = `{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`

// kubeletTemplate: address, port, healthz port, client CA, serving cert and key, cgroup root,
// cluster DNS, cluster domain, resolv.conf, runtime endpoint, pod logs dir.
const kubeletTemplate = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
tlsCertFile: %s
tlsPrivateKeyFile: %s
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
clusterDNS:
- %s
clusterDomain: %s
resolvConf: %s
containerRuntimeEndpoint: %s
podLogsDir: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
`

// proxyTemplate: kubeconfig, node name, cluster range, healthz and metrics addresses, NodePort
// address. conntrack zeros leave the kernel's conntrack settings alone.
const proxyTemplate = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
healthzBindAddress: %s
metricsBindAddress: %s
nodePortAddresses:
- %s/32
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`
