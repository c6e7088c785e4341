package controlplane

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/bench/internal/procstat"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/discovery"
)

// Config is one control-plane scenario.
type Config struct {
	// Self is the harness's executable, re-executed as the controller with EnvRole=Role.
	Self string
	// EnvRole is the variable the re-executed binary reads its role from.
	EnvRole string
	// Services in the controller's store, Proxies simulated, Changes route changes measured.
	Services, Proxies, Changes int
	// MemoryLimit, when set, is the controller process's GOMEMLIMIT (e.g. "150MiB"); the
	// harness's own is left alone.
	MemoryLimit string
	// Profiles, when set, is a directory for the controller's heap and goroutine profiles,
	// taken with every proxy watching after the changes.
	Profiles string
}

// Result is what one scenario measured. Times are in milliseconds, memory in bytes.
type Result struct {
	Services int `json:"services"`
	Proxies  int `json:"proxies"`
	Streams  int `json:"streams"`
	// IdleRSS is the controller's VmRSS with its services loaded and no proxy connected.
	IdleRSS uint64 `json:"idle_rss"`
	// RSS is VmRSS with every proxy connected and watching, after the changes; HWM the peak.
	RSS uint64 `json:"rss"`
	HWM uint64 `json:"hwm"`
	// ConnectSeconds is the wall time until every proxy had its first snapshots, ConnectCPU the
	// controller's CPU seconds meanwhile (TLS handshakes and first pushes).
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectCPU     float64 `json:"connect_cpu_seconds"`
	// IdleCPU is the controller's CPU in vCPU (seconds per second) over a quiet period with
	// every proxy watching.
	IdleCPU float64 `json:"idle_vcpu"`
	// ChangeCPU is the controller's CPU seconds per route change.
	ChangeCPU float64 `json:"change_cpu_seconds"`
	// Changes measured; Everyone holds, per change, the time until the last proxy had it;
	// Each the p50 and p99 over every (change, proxy) arrival.
	Changes  int       `json:"changes"`
	Everyone []float64 `json:"everyone_ms"`
	EachP50  float64   `json:"each_p50_ms"`
	EachP99  float64   `json:"each_p99_ms"`
	EveryP50 float64   `json:"everyone_p50_ms"`
	EveryP99 float64   `json:"everyone_p99_ms"`
	EveryMax float64   `json:"everyone_max_ms"`
	// Runtime is the controller's Go runtime state with every proxy watching, after the
	// changes (read after RSS and HWM).
	Runtime    Stats  `json:"runtime"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// watcher is one simulated proxy: its own connection and a discovery client (the proxy's
// own, one Mesh stream) watching RootService, one other service and its inbound configuration.
type watcher struct {
	conn        *grpc.ClientConn
	client      *discovery.Client
	root, other *discovery.Watch[meshv1.DestinationSnapshot]
}

// weight returns RootService's v1 weight in the newest snapshot w received, and when it arrived.
func (w *watcher) weight() (uint32, time.Time) {
	snap, at := w.root.Received()
	for _, b := range snap.GetBackends() {
		if strings.HasPrefix(b.GetService(), RootService+"-v1") {
			return b.GetWeight(), at
		}
	}
	return 0, at
}

// Run starts the controller process, connects cfg.Proxies simulated proxies, measures, and
// stops everything before returning.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	dir, err := os.MkdirTemp("", "weftbench-cp-")
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	defer os.RemoveAll(dir)
	anchorsPEM, certPEM, keyPEM, err := identity.GenerateRoots(config.DefaultTrustDomain, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{anchorsFile: anchorsPEM, issuerCertFile: certPEM, issuerKeyFile: keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	leaf, bundle, err := clientLeaf(anchorsPEM, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.Command(cfg.Self)
	cmd.Env = append(os.Environ(), cfg.EnvRole+"="+Role, fmt.Sprintf("%s=%d", EnvServices, cfg.Services), EnvDir+"="+dir, EnvProfiles+"="+cfg.Profiles)
	if cfg.MemoryLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+cfg.MemoryLimit)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start controller: %w", err)
	}
	defer func() {
		_ = stdin.Close() // the controller stops when its input closes
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", fmt.Errorf("controller exited: %s", strings.TrimSpace(stderr.String()))
			}
			return l, nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Minute):
			return "", errors.New("controller did not answer within 2m")
		}
	}
	l, err := next()
	if err != nil {
		return nil, err
	}
	addr, ok := strings.CutPrefix(l, "ready ")
	if !ok {
		return nil, fmt.Errorf("controller said %q, want \"ready ADDR\"", l)
	}
	pid := cmd.Process.Pid
	time.Sleep(time.Second) // let the controller settle
	idle, err := procstat.Read(pid)
	if err != nil {
		return nil, err
	}
	res := &Result{Services: cfg.Services, Proxies: cfg.Proxies, Streams: cfg.Proxies, IdleRSS: idle.RSS}

	var errCount atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		if errCount.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
	}
	// The proxy's own credentials and dial options (internal/proxy/identity and sidecar use
	// the same).
	creds := mtls.ControlCredentials(leaf, bundle, identity.ControllerIdentity(config.DefaultTrustDomain).String())
	ws := make([]*watcher, cfg.Proxies)
	defer func() {
		for _, w := range ws {
			if w != nil && w.conn != nil {
				_ = w.conn.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	for i := range ws {
		conn, err := grpc.NewClient(addr, append(discovery.DialOptions(), grpc.WithTransportCredentials(creds))...)
		if err != nil {
			return nil, fmt.Errorf("gRPC client: %w", err)
		}
		info := &meshv1.ProxyInfo{Id: fmt.Sprintf("client-%d", i), Workload: "client", Namespace: config.DefaultNamespace}
		client := discovery.New(discovery.Config{Conn: conn, Proxy: info})
		w := &watcher{
			conn:   conn,
			client: client,
			root:   client.Destination(RootService + "." + config.DefaultNamespace),
			other:  client.Destination(ServiceName(1+i%max(cfg.Services-1, 1)) + "." + config.DefaultNamespace),
		}
		ws[i] = w
		wg.Go(func() { _ = client.Run(ctx) })
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 5*time.Minute)
	defer waitCancel()
	for _, w := range ws {
		for _, d := range []*discovery.Watch[meshv1.DestinationSnapshot]{w.root, w.other} {
			if snap := d.Wait(waitCtx); snap == nil {
				return nil, fmt.Errorf("the simulated proxies did not all receive their first snapshots within 5m: %s: %v", d.Name(), d.Err())
			} else if !snap.GetExists() {
				fail(fmt.Errorf("watch %s: the controller says it does not exist", d.Name()))
			}
		}
		if w.client.Inbound().Wait(waitCtx) == nil {
			return nil, fmt.Errorf("the simulated proxies did not all receive their inbound snapshots within 5m: %v", w.client.Inbound().Err())
		}
	}
	res.ConnectSeconds = time.Since(start).Seconds()
	connected, err := procstat.Read(pid)
	if err != nil {
		return nil, err
	}
	res.ConnectCPU = (connected.CPU - idle.CPU).Seconds()
	for _, w := range ws {
		if got, _ := w.weight(); got != 50 {
			fail(fmt.Errorf("a proxy started with weight %d for %s-v1, want 50", got, RootService))
		}
	}
	quietFrom, quietStart := connected, time.Now()
	time.Sleep(2 * time.Second)
	quiet, err := procstat.Read(pid)
	if err != nil {
		return nil, err
	}
	res.IdleCPU = (quiet.CPU - quietFrom.CPU).Seconds() / time.Since(quietStart).Seconds()

	var each []float64
	for c := range cfg.Changes {
		weight := uint32(51 + c%49) // never 50, never the previous one
		sent := time.Now()
		if _, err := fmt.Fprintf(stdin, "%d\n", weight); err != nil {
			return nil, fmt.Errorf("send a route change: %w", err)
		}
		if l, err := next(); err != nil {
			return nil, err
		} else if l != "applied" {
			return nil, fmt.Errorf("route change: controller said %q", l)
		}
		deadline := time.Now().Add(time.Minute)
		var last time.Duration
		for _, w := range ws {
			for {
				got, seen := w.weight()
				if got == weight {
					d := seen.Sub(sent)
					each = append(each, ms(d))
					last = max(last, d)
					break
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("route change %d: a proxy still has weight %d after 1m, want %d", c, got, weight)
				}
				time.Sleep(time.Millisecond)
			}
		}
		res.Everyone = append(res.Everyone, ms(last))
		time.Sleep(200 * time.Millisecond) // the next change starts from a quiet controller
	}
	final, err := procstat.Read(pid)
	if err != nil {
		return nil, err
	}
	if cfg.Changes > 0 {
		res.ChangeCPU = (final.CPU - quiet.CPU).Seconds() / float64(cfg.Changes)
	}
	res.RSS, res.HWM = final.RSS, final.HWM
	if _, err := fmt.Fprintln(stdin, "stats"); err != nil {
		return nil, fmt.Errorf("ask for runtime stats: %w", err)
	}
	if l, err := next(); err != nil {
		return nil, err
	} else if js, ok := strings.CutPrefix(l, "stats "); !ok {
		return nil, fmt.Errorf("stats: controller said %q", l)
	} else if err := json.Unmarshal([]byte(js), &res.Runtime); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	res.Changes = len(res.Everyone)
	res.EachP50, res.EachP99 = percentile(each, 0.5), percentile(each, 0.99)
	res.EveryP50, res.EveryP99 = percentile(res.Everyone, 0.5), percentile(res.Everyone, 0.99)
	res.EveryMax = percentile(res.Everyone, 1)
	for _, w := range ws {
		// A watch that broke or was refused while measuring.
		for _, err := range []error{w.root.Err(), w.other.Err(), w.client.Inbound().Err()} {
			if err != nil {
				fail(err)
			}
		}
	}
	cancel()
	wg.Wait()
	res.Errors = errCount.Load()
	if s, ok := firstErr.Load().(string); ok {
		res.FirstError = s
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile of xs (nearest rank); 0 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// clientLeaf signs a certificate for the workload "client" with the issuer, as the controller's
// CA would after Identity.Certify, and returns it with the trust bundle.
func clientLeaf(anchorsPEM, certPEM, keyPEM []byte) (*mtls.Current, *mtls.Bundle, error) {
	issuer, err := identity.LoadIssuer(anchorsPEM, certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	ca, err := identity.NewCA(issuer, identity.CAConfig{})
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, err
	}
	chain, err := ca.Sign(csr, identity.Identity{TrustDomain: config.DefaultTrustDomain, Namespace: config.DefaultNamespace, ServiceAccount: "client"}, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sign the simulated proxies' certificate: %w", err)
	}
	parsed, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, err
	}
	var cur mtls.Current
	cur.Store(&tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: parsed})
	return &cur, ca.Bundle(), nil
}
