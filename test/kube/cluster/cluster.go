// Package cluster runs a real single-node Kubernetes cluster for end-to-end tests: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (iptables mode)
// built by test/kube/build.sh, containerd with runc and the bridge CNI plugin from Debian, and
// CoreDNS, all on this machine with no registry: images are imported into containerd from
// tarballs (ImportImage) and pods use imagePullPolicy Never.
//
// Pods get addresses in PodCIDR on a bridge of the harness's own (BridgeName, gateway NodeIP),
// Services in ServiceCIDR; CoreDNS answers cluster.local names at DNSServiceIP and sends nothing
// off the machine. Everything the cluster writes lives in its directory; Stop ends every process it
// started (by PID), removes the pods' network namespaces, mounts, cgroups, the bridge and the
// iptables chains, and restores the kernel settings the cluster changed.
//
// It needs root, containerd, runc, the CNI plugins, iptables and iproute2 (scripts/test.sh
// installs them) and the binaries in WEFT_KUBE_BIN_DIR; Requirements says what is missing. One
// cluster runs on a machine at a time: Start waits for a machine-wide lock.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The cluster's fixed addresses and names. The ranges are benchmarking ranges (RFC 2544); the pods'
// range is on the cluster's bridge and the harness routes the service range to that bridge too, so
// no packet to either leaves the machine.
const (
	// Version is the Kubernetes version test/kube/build.sh builds.
	Version = "v1.37.2"
	// EnvBinDir names the directory of the binaries.
	EnvBinDir = "WEFT_KUBE_BIN_DIR"
	// PodCIDR is the pods' range, on the bridge.
	PodCIDR = "198.18.0.0/24"
	// NodeIP is the bridge's address: the node's InternalIP, where the API server and the kubelet
	// listen.
	NodeIP = "198.18.0.1"
	// ServiceCIDR is the Services' range.
	ServiceCIDR = "198.19.0.0/16"
	// APIServiceIP is the ClusterIP of the kubernetes Service.
	APIServiceIP = "198.19.0.1"
	// DNSServiceIP is CoreDNS's ClusterIP (kube-system/kube-dns).
	DNSServiceIP = "198.19.0.10"
	// ClusterDomain is the DNS zone of Services and pods.
	ClusterDomain = "cluster.local"
	// BridgeName is the pods' bridge.
	BridgeName = "weftkube0"
	// NetworkName is the CNI network's name (it appears in the bridge plugin's iptables comments).
	NetworkName = "weft-kube"
	// NodeName is the single node's name.
	NodeName = "weft-node"
	// ImageRegistry prefixes the images the harness builds (never contacted).
	ImageRegistry = "weft.test"
	// PauseImage is the pods' sandbox image, built from test/kube/tools/pause.
	PauseImage = ImageRegistry + "/pause:v1"
	// CoreDNSImage is CoreDNS's image, built from test/kube/tools/coredns.
	CoreDNSImage = ImageRegistry + "/coredns:v1"
)

// Binaries are the files Start needs in the binary directory.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "pause"}

// hostTools are the programs Start needs from the machine, with the Debian package of each.
var hostTools = [][2]string{
	{"containerd", "containerd"}, {"containerd-shim-runc-v2", "containerd"}, {"ctr", "containerd"},
	{"runc", "runc"}, {"conntrack", "conntrack"}, {"iptables", "iptables"}, {"ip", "iproute2"},
}

// cniPlugins are the CNI plugins the cluster's network uses, in cniBinDir.
var cniPlugins = []string{"bridge", "host-local", "loopback"}

const cniBinDir = "/usr/lib/cni"

// Time bounds: hang guards for a loaded two-core machine, not performance thresholds.
const (
	defaultStartTimeout = 5 * time.Minute
	stopGrace           = 10 * time.Second
)

// BinDir returns the directory of the binaries: $WEFT_KUBE_BIN_DIR, or the cache directory that
// test/kube/build.sh fills by default.
func BinDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "weft-kube", Version)
	}
	return filepath.Join(home, ".cache", "weft-kube", Version)
}

// Requirements returns nil when a cluster can start on this machine with the binaries in binDir
// ("" means BinDir()), or an error saying what is missing and how to get it.
func Requirements(binDir string) error {
	if binDir == "" {
		binDir = BinDir()
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containerd, the kubelet and the pods' network need it)")
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, fmt.Sprintf("%s in %s (build with `test/kube/build.sh %s`; scripts/test.sh does it)", b, binDir, binDir))
		}
	}
	for _, t := range hostTools {
		if _, err := lookPath(t[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", t[0], t[1]))
		}
	}
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, fmt.Sprintf("CNI plugin %s in %s (apt-get install containernetworking-plugins)", p, cniBinDir))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("test cluster unavailable: missing %s", strings.Join(missing, "; "))
	}
	return nil
}

// lookPath finds a program in PATH or the sbin directories (not always in a test's PATH).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the sbin directories", name)
}

// Options configure Start.
type Options struct {
	// BinDir holds the binaries; "" means BinDir().
	BinDir string
	// Dir is the cluster's directory (certificates, configuration, state, logs). "" makes a new
	// temporary directory, which Stop removes; a given directory is created if needed and kept by
	// Stop (emptied of mounts and state, with the logs left), and must not be in use.
	Dir string
	// Logger is told the steps; nil means slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds Start when ctx has no earlier deadline; 0 means 5 minutes.
	StartTimeout time.Duration
}

// Cluster is a running single-node cluster. Its fields are read-only.
type Cluster struct {
	// Dir is the cluster's directory; LogDir holds one log file per process.
	Dir, LogDir string
	// BinDir holds the Kubernetes binaries (kubectl is the system's).
	BinDir string
	// Kubeconfig is the path of an administrator's kubeconfig (group system:masters), for kubectl.
	Kubeconfig string
	// Config authenticates as the same administrator.
	Config *rest.Config
	// Client is a clientset for Config.
	Client *kubernetes.Clientset
	// ContainerdSocket is containerd's socket, for ctr -a.
	ContainerdSocket string

	log       *slog.Logger
	removeDir bool
	lock      *os.File
	sysctls   map[string]string
	// absent are the hostPaths that did not exist before Start.
	absent     []string
	cgroupRoot string
	procs      map[string]*process
	order      []string
	madeBridge bool

	stopOnce sync.Once
	stopErr  error
}

// paths inside Dir.
func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

// Start starts a cluster and returns when the node is Ready and CoreDNS answers. On error it
// returns no cluster: everything started so far is stopped, and the error names the log directory
// (a given Dir keeps it) and anything the cleanup could not remove.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if err := Requirements(o.BinDir); err != nil {
		return nil, err
	}
	if o.BinDir == "" {
		o.BinDir = BinDir()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()

	lock, err := acquireLock(ctx)
	if err != nil {
		return nil, err
	}
	c := &Cluster{BinDir: o.BinDir, log: o.Logger, lock: lock, procs: map[string]*process{}}
	defer func() {
		if err != nil {
			if serr := c.Stop(context.WithoutCancel(ctx)); serr != nil {
				err = fmt.Errorf("%w (and stopping what had started: %v)", err, serr)
			}
			if left := c.Leftovers(context.WithoutCancel(ctx)); len(left) > 0 {
				err = fmt.Errorf("%w (left on the machine: %s)", err, strings.Join(left, "; "))
			}
		}
	}()
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "weft-kube-")
		if err != nil {
			return nil, fmt.Errorf("cluster directory: %w", err)
		}
		c.Dir, c.removeDir = d, true
	} else {
		d, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("cluster directory %s: %w", o.Dir, err)
		}
		c.Dir = d
	}
	c.LogDir = c.path("logs")
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster directory: %w", err)
	}
	c.log.Info("starting test cluster", "dir", c.Dir, "logs", c.LogDir)
	if err := c.start(ctx); err != nil {
		return nil, fmt.Errorf("test cluster: %w (logs in %s)", err, c.LogDir)
	}
	c.log.Info("test cluster ready", "kubeconfig", c.Kubeconfig)
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	c.sysctls = readSysctls()
	c.absent = absentHostPaths()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	c.cgroupRoot = "/weft-kube-" + hex.EncodeToString(id)

	if err := c.setupHostNetwork(ctx); err != nil {
		return err
	}
	cfg, err := c.writeConfig()
	if err != nil {
		return err
	}
	// The images need only the binaries: build them while the processes start.
	imagesDone := make(chan error, 1)
	go func() { imagesDone <- c.buildImages(ctx) }()

	if err := c.startProcess("etcd", cfg.etcdArgs...); err != nil {
		return err
	}
	if err := c.startProcess("containerd", "--config", c.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := c.startProcess("kube-apiserver", cfg.apiserverArgs...); err != nil {
		return err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		if err := c.startProcess(name, cfg.args[name]...); err != nil {
			return err
		}
	}
	if err := c.waitContainerd(ctx); err != nil {
		return err
	}
	select {
	case err := <-imagesDone:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("building the images: %w", ctx.Err())
	}
	if err := c.ImportImage(ctx, c.path("images", "pause.tar")); err != nil {
		return err
	}
	if err := c.startProcess("kubelet", cfg.args["kubelet"]...); err != nil {
		return err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return err
	}
	if err := c.ImportImage(ctx, c.path("images", "coredns.tar")); err != nil {
		return err
	}
	return c.deployCoreDNS(ctx)
}

// setupHostNetwork makes the pods' bridge with the node's address (the API server and the kubelet
// listen there, so pods reach them and nothing outside the machine does) and turns on forwarding.
func (c *Cluster) setupHostNetwork(ctx context.Context) error {
	ip, err := lookPath("ip")
	if err != nil {
		return err
	}
	if linkExists(BridgeName) {
		// Left by a test process that died: the lock says no cluster uses it.
		c.log.Warn("removing a stale bridge", "bridge", BridgeName)
		if _, err := run(ctx, 30*time.Second, ip, "link", "del", BridgeName); err != nil {
			return err
		}
	}
	c.madeBridge = true
	if _, err := run(ctx, 30*time.Second, ip, "link", "add", BridgeName, "type", "bridge"); err != nil {
		return err
	}
	if _, err := run(ctx, 30*time.Second, ip, "addr", "add", NodeIP+"/24", "dev", BridgeName); err != nil {
		return err
	}
	if _, err := run(ctx, 30*time.Second, ip, "link", "set", BridgeName, "up"); err != nil {
		return err
	}
	// Service addresses route to the bridge: a connection kube-proxy's
	// rules do not rewrite (the rules of a new Service are not written
	// yet, or a port no Service has) stays on this machine instead of
	// following the default route out of it. The route goes with the
	// bridge.
	if _, err := run(ctx, 30*time.Second, ip, "route", "add", ServiceCIDR, "dev", BridgeName); err != nil {
		return err
	}
	return setSysctl("net.ipv4.ip_forward", "1")
}

// startProcess starts a binary of BinDir (or containerd from the system) and checks that it does
// not exit at once.
func (c *Cluster) startProcess(name string, args ...string) error {
	bin := filepath.Join(c.BinDir, name)
	if name == "containerd" {
		p, err := lookPath(name)
		if err != nil {
			return err
		}
		bin = p
	}
	p, err := startProcess(c.LogDir, name, bin, args...)
	if err != nil {
		return err
	}
	c.procs[name] = p
	c.order = append(c.order, name)
	c.log.Debug("started", "process", name, "pid", p.pid(), "log", p.logPath)
	select {
	case <-p.done:
		return p.exitError()
	case <-time.After(200 * time.Millisecond):
	}
	return nil
}

// checkAlive returns the first cluster process that has exited, as an error with its log.
func (c *Cluster) checkAlive() error {
	for _, n := range c.order {
		if p := c.procs[n]; p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// poll calls check every interval until it reports done, a process dies, or ctx ends; what is the
// thing waited for, and check's last note explains a timeout.
func (c *Cluster) poll(ctx context.Context, what string, check func(ctx context.Context) (bool, string)) error {
	var last string
	for {
		ok, note := check(ctx)
		if ok {
			return nil
		}
		if note != "" {
			last = note
		}
		if err := c.checkAlive(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (last: %s): %w", what, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	defer hc.CloseIdleConnections()
	return c.poll(ctx, "kube-apiserver /readyz", func(ctx context.Context) (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := newGet(rctx, c.Config.Host+"/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprintf("status %d: %s", resp.StatusCode, body)
	})
}

func (c *Cluster) waitContainerd(ctx context.Context) error {
	return c.poll(ctx, "containerd", func(ctx context.Context) (bool, string) {
		out, err := c.ctr(ctx, "version")
		if err != nil {
			return false, err.Error() + string(out)
		}
		return true, ""
	})
}

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	return c.poll(ctx, "node "+NodeName+" Ready", func(ctx context.Context) (bool, string) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, cond.Reason + ": " + cond.Message
			}
		}
		return false, "no Ready condition yet"
	})
}

// ctr runs containerd's ctr against the cluster's containerd, in the CRI namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := lookPath("ctr")
	if err != nil {
		return nil, err
	}
	return run(ctx, 2*time.Minute, bin, append([]string{"-a", c.ContainerdSocket, "-n", "k8s.io"}, args...)...)
}

// ImportImage imports an image tarball (docker-archive or OCI) into the cluster's containerd, for
// pods with imagePullPolicy Never.
func (c *Cluster) ImportImage(ctx context.Context, tarPath string) error {
	if _, err := os.Stat(tarPath); err != nil {
		return fmt.Errorf("import image: %w", err)
	}
	if _, err := c.ctr(ctx, "images", "import", tarPath); err != nil {
		return fmt.Errorf("import image %s: %w", tarPath, err)
	}
	return nil
}

// Kubectl runs the system's kubectl with the administrator's kubeconfig and returns its standard
// output (a version-skew warning on standard error is expected). The error carries standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := lookPath("kubectl")
	if err != nil {
		return nil, fmt.Errorf("kubectl: %w (apt-get install kubectl)", err)
	}
	// Its discovery cache stays in Dir, not in $HOME/.kube.
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", c.path("kubectl-cache")}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// PIDs returns the process ids of the cluster's own processes (not the containers'), by name.
func (c *Cluster) PIDs() map[string]int {
	out := map[string]int{}
	for n, p := range c.procs {
		out[n] = p.pid()
	}
	return out
}

// Stop stops the cluster and removes what it made outside its directory: processes (SIGTERM, then
// SIGKILL after a bound), pods' containers and network namespaces, mounts under Dir, the cgroups,
// the bridge, kube-proxy's and the bridge plugin's iptables chains; it restores the kernel settings.
// A temporary Dir is removed. Stop is bounded in time and may be called more than once; it returns
// every step's failure.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { c.stopErr = c.stop(ctx) })
	return c.stopErr
}

func (c *Cluster) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	stopProc := func(name string) {
		if p := c.procs[name]; p != nil {
			add(p.stop(stopGrace))
		}
	}
	// Nothing may recreate the pods that go now.
	stopProc("kube-controller-manager")
	stopProc("kube-scheduler")
	if c.procs["kubelet"] != nil && !c.procs["kubelet"].exited() && c.Client != nil {
		// The kubelet tears pods down through the CNI plugin (addresses, veths, namespaces, the
		// masquerading rules); what it misses is removed below.
		c.deletePods(ctx)
	}
	stopProc("kubelet")
	stopProc("kube-proxy")
	// The API server may take its time on SIGTERM: stop it (then etcd) meanwhile.
	apiDone := make(chan error, 1)
	go func() {
		var e []error
		for _, n := range []string{"kube-apiserver", "etcd"} {
			if p := c.procs[n]; p != nil {
				e = append(e, p.stop(stopGrace))
			}
		}
		apiDone <- errors.Join(e...)
	}()
	if p := c.procs["containerd"]; p != nil && !p.exited() {
		c.killContainers(ctx)
	}
	stopProc("containerd")
	// Shims outlive containerd; they and anything still in the pods' cgroups are the cluster's.
	if c.Dir != "" {
		for _, pid := range processesMentioning(c.Dir) {
			c.log.Debug("killing a leftover process", "pid", pid)
			_ = killPID(pid)
		}
	}
	if c.cgroupRoot != "" {
		add(removeCgroupRoot(c.cgroupRoot))
	}
	add(<-apiDone)

	if c.procs["kube-proxy"] != nil {
		if out, err := run(ctx, time.Minute, filepath.Join(c.BinDir, "kube-proxy"), "--cleanup"); err != nil {
			c.log.Debug("kube-proxy --cleanup", "err", err, "output", string(out))
		}
	}
	add(sweepIptables(ctx, NetworkName))
	if c.Dir != "" {
		add(unmountAll(c.Dir))
		add(removeCNIState())
		add(removeContainerLogLinks(c.Dir))
	}
	for _, p := range c.absent {
		add(os.RemoveAll(p))
	}
	if c.madeBridge && linkExists(BridgeName) {
		if ip, err := lookPath("ip"); err == nil {
			_, err := run(ctx, 30*time.Second, ip, "link", "del", BridgeName)
			add(err)
		}
	}
	if c.sysctls != nil {
		add(restoreSysctls(c.sysctls))
	}
	if c.Dir != "" {
		if c.removeDir {
			add(os.RemoveAll(c.Dir))
		} else {
			// Keep the logs and configuration, not the state.
			for _, d := range []string{"containerd", "kubelet", "etcd", "cni-ipam", "pod-logs"} {
				add(os.RemoveAll(c.path(d)))
			}
		}
	}
	if c.lock != nil {
		_ = c.lock.Close()
		c.lock = nil
	}
	if len(errs) > 0 {
		return fmt.Errorf("stopping the test cluster: %w", errors.Join(errs...))
	}
	c.log.Info("test cluster stopped", "dir", c.Dir)
	return nil
}

// deletePods deletes every pod at once and waits, bounded, until the kubelet has torn them down.
func (c *Cluster) deletePods(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		c.log.Debug("listing namespaces", "err", err)
		return
	}
	zero := int64(0)
	for _, ns := range nss.Items {
		err := c.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		if err != nil {
			c.log.Debug("deleting pods", "namespace", ns.Name, "err", err)
		}
	}
	netns := c.path("containerd", "state", "io.containerd.grpc.v1.cri", "netns")
	for ctx.Err() == nil {
		ents, _ := os.ReadDir(netns)
		if len(ents) == 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.log.Warn("pods' network namespaces still there after deleting the pods; removing them by force")
}

// killContainers kills and deletes every task and container containerd still has.
func (c *Cluster) killContainers(ctx context.Context) {
	out, err := c.ctr(ctx, "tasks", "ls", "-q")
	if err != nil {
		return
	}
	ids := strings.Fields(string(out))
	for _, id := range ids {
		_, _ = c.ctr(ctx, "tasks", "kill", "-a", "-s", "SIGKILL", id)
	}
	for _, id := range ids {
		for range 20 {
			if _, err := c.ctr(ctx, "tasks", "delete", "-f", id); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if out, err := c.ctr(ctx, "containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_, _ = c.ctr(ctx, "containers", "delete", id)
		}
	}
}

// removeCNIState removes libcni's cached results for the cluster's network (kept by containerd
// under /var/lib/cni when a pod's teardown did not run).
func removeCNIState() error {
	matches, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", NetworkName+"-*"))
	var errs []error
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeContainerLogLinks removes the kubelet's links in /var/log/containers that point into dir.
func removeContainerLogLinks(dir string) error {
	ents, _ := os.ReadDir("/var/log/containers")
	var errs []error
	for _, e := range ents {
		p := filepath.Join("/var/log/containers", e.Name())
		if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, dir+"/") {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists what the cluster left on the machine after Stop: processes, mounts under Dir,
// its cgroups, the bridge, iptables chains and rules, changed kernel settings, a temporary Dir.
// It is empty when Stop cleaned up everything.
func (c *Cluster) Leftovers(ctx context.Context) []string {
	var out []string
	for n, p := range c.procs {
		if !p.exited() {
			out = append(out, fmt.Sprintf("process %s (pid %d)", n, p.pid()))
		}
	}
	for _, pid := range processesMentioning(c.Dir) {
		out = append(out, fmt.Sprintf("process %d naming %s", pid, c.Dir))
	}
	if mps, err := mountsUnder(c.Dir); err == nil {
		for _, m := range mps {
			out = append(out, "mount "+m)
		}
	}
	if mounts, err := cgroupMounts(); err == nil && c.cgroupRoot != "" {
		for _, m := range mounts {
			if _, err := os.Stat(filepath.Join(m, c.cgroupRoot)); err == nil {
				out = append(out, "cgroup "+filepath.Join(m, c.cgroupRoot))
			}
		}
	}
	if linkExists(BridgeName) {
		out = append(out, "bridge "+BridgeName)
	}
	out = append(out, iptablesLeftovers(ctx, NetworkName)...)
	now := readSysctls()
	for n, v := range c.sysctls {
		if now[n] != v {
			out = append(out, fmt.Sprintf("sysctl %s=%s (was %s)", n, now[n], v))
		}
	}
	for _, p := range c.absent {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, "path "+p)
		}
	}
	if c.removeDir {
		if _, err := os.Stat(c.Dir); err == nil {
			out = append(out, "directory "+c.Dir)
		}
	}
	if ents, err := os.ReadDir(c.path("containerd", "state", "io.containerd.grpc.v1.cri", "netns")); err == nil {
		for _, e := range ents {
			out = append(out, "network namespace "+e.Name())
		}
	}
	slices.Sort(out)
	return out
}
