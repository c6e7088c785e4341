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
	"google.golang.org/grpc/credentials"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/bench/internal/procstat"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/mtls"
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

// watcher is one simulated proxy: its own connection, a watch on RootService, a watch on one
// other service, and a watch on its inbound configuration.
type watcher struct {
	conn *grpc.ClientConn
	// weight is RootService's v1 weight in the newest snapshot received; seen its arrival time.
	mu     sync.Mutex // guards weight and seen
	weight uint32
	seen   time.Time
	ready  chan struct{} // closed once the first snapshots of all three watches arrived
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
	res := &Result{Services: cfg.Services, Proxies: cfg.Proxies, Streams: 3 * cfg.Proxies, IdleRSS: idle.RSS}

	var errCount atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		if errCount.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
	}
	tlsCfg := mtls.ControlClientConfig(leaf, bundle, identity.ControllerIdentity(config.DefaultTrustDomain).String())
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
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return nil, fmt.Errorf("gRPC client: %w", err)
		}
		w := &watcher{conn: conn, ready: make(chan struct{})}
		ws[i] = w
		info := &meshv1.ProxyInfo{Id: fmt.Sprintf("client-%d", i), Workload: "client", Namespace: config.DefaultNamespace}
		var pending sync.WaitGroup
		pending.Add(3)
		go func() { pending.Wait(); close(w.ready) }()
		dests := meshv1.NewDestinationsClient(conn)
		for k, svc := range []string{RootService, ServiceName(1 + i%max(cfg.Services-1, 1))} {
			wg.Go(func() {
				stream, err := dests.Watch(ctx, &meshv1.DestinationRequest{Authority: svc + "." + config.DefaultNamespace, Proxy: info})
				if err != nil {
					fail(err)
					pending.Done()
					return
				}
				first := true
				for {
					snap, err := stream.Recv()
					if err != nil {
						if ctx.Err() == nil {
							fail(fmt.Errorf("watch %s: %w", svc, err))
						}
						if first {
							pending.Done()
						}
						return
					}
					if !snap.GetExists() {
						fail(fmt.Errorf("watch %s: the controller says it does not exist", svc))
					}
					if k == 0 {
						now := time.Now()
						for _, b := range snap.GetBackends() {
							if strings.HasPrefix(b.GetService(), RootService+"-v1") {
								w.mu.Lock()
								w.weight, w.seen = b.GetWeight(), now
								w.mu.Unlock()
							}
						}
					}
					if first {
						first = false
						pending.Done()
					}
				}
			})
		}
		wg.Go(func() {
			stream, err := meshv1.NewInboundClient(conn).Watch(ctx, &meshv1.InboundRequest{Proxy: info})
			if err != nil {
				fail(err)
				pending.Done()
				return
			}
			first := true
			for {
				if _, err := stream.Recv(); err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("watch inbound: %w", err))
					}
					if first {
						pending.Done()
					}
					return
				}
				if first {
					first = false
					pending.Done()
				}
			}
		})
	}
	for _, w := range ws {
		select {
		case <-w.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Minute):
			return nil, errors.New("the simulated proxies did not all receive their first snapshots within 5m")
		}
	}
	res.ConnectSeconds = time.Since(start).Seconds()
	connected, err := procstat.Read(pid)
	if err != nil {
		return nil, err
	}
	res.ConnectCPU = (connected.CPU - idle.CPU).Seconds()
	for _, w := range ws {
		w.mu.Lock()
		if w.weight != 50 {
			fail(fmt.Errorf("a proxy started with weight %d for %s-v1, want 50", w.weight, RootService))
		}
		w.mu.Unlock()
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
				w.mu.Lock()
				got, seen := w.weight, w.seen
				w.mu.Unlock()
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
