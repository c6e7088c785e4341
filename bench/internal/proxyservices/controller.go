// Package proxyservices measures one real weft-proxy in a mesh of many services: its memory
// idle while the controller holds every service, and after it has called a tenth of them and
// then all of them, each once, through transparent capture (one outbound capture listener,
// iptables from `weft-proxy init`, SO_ORIGINAL_DST, the controller resolving each captured
// cluster IP:port to its service), as a pod's proxy reaches arbitrary services in Kubernetes.
//
// Run creates a network namespace of its own and runs everything inside it: the controller
// (the harness re-executed in the role Role, see ServeController, with a memory store), the
// proxy as uid ProxyUID, an HTTP echo server standing for every service's one endpoint, and
// the client. It deletes the namespace and stops every process it started before returning,
// on failure too. It needs root, `ip` and iptables; Check says what is missing.
//
// Only the benchmark harness and its tests import proxyservices.
package proxyservices

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/controller"
)

// Role is the name under which the harness re-executes itself as the controller.
const Role = "services-controller"

// Environment of the controller role.
const (
	EnvServices = "WEFTBENCH_PS_SERVICES" // number of services in the store
	EnvDir      = "WEFTBENCH_PS_DIR"      // directory the role writes the trust anchors and the proxy's join token into
)

// Files the role writes into EnvDir.
const (
	AnchorsFile = "trust-anchors.pem"
	TokenFile   = "client.token"
)

// The workload whose proxy is measured.
const (
	ClientService = "client"
	ClientProxyID = "client-0"
)

// MaxServices is the most services the address plan below holds.
const MaxServices = 65000

// Addresses of service i (0-based): its cluster IP in 198.19.0.0/16, routed out of an
// interface that leads nowhere so that only the proxy's capture answers it, and its one endpoint in
// 198.18.0.0/16, a local range on the loopback interface where the echo server accepts on
// every address. Both are inside 198.18.0.0/15, the range set aside for benchmarks, and never
// leave the namespace.
const (
	ServicePort  = 80
	EndpointPort = 8080
)

// ClusterIP returns the cluster IP of service i.
func ClusterIP(i int) netip.Addr {
	a := i + 1
	return netip.AddrFrom4([4]byte{198, 19, byte(a >> 8), byte(a)})
}

// EndpointIP returns the address of service i's endpoint.
func EndpointIP(i int) netip.Addr {
	a := i + 1
	return netip.AddrFrom4([4]byte{198, 18, byte(a >> 8), byte(a)})
}

// ServiceName is the name of service i.
func ServiceName(i int) string { return "svc-" + strconv.Itoa(i) }

// ServeController runs the controller role: a controller on 127.0.0.1:0 whose memory store
// holds the services EnvServices names, each with a cluster IP, the port ServicePort (target
// port EndpointPort) and one ready endpoint outside the mesh, plus the client workload and its
// proxy. It writes the trust anchors and a join token for the client's service account into
// EnvDir, prints "ready ADDR" with its gRPC address on out, and serves until ctx ends or in
// closes.
func ServeController(ctx context.Context, in io.Reader, out io.Writer) error {
	n, err := strconv.Atoi(os.Getenv(EnvServices))
	if err != nil || n < 1 || n > MaxServices {
		return fmt.Errorf("$%s: want a number from 1 to %d, got %q", EnvServices, MaxServices, os.Getenv(EnvServices))
	}
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return fmt.Errorf("$%s is not set", EnvDir)
	}
	store := memory.New(config.DefaultTrustDomain)
	for i := range n {
		store.SetService(config.Service{
			Name: ServiceName(i), Namespace: config.DefaultNamespace,
			ClusterIPs: []string{ClusterIP(i).String()},
			Ports:      []config.ServicePort{{Name: "http", Port: ServicePort, TargetPort: strconv.Itoa(EndpointPort)}},
			Endpoints: []config.Endpoint{{
				Address: netip.AddrPortFrom(EndpointIP(i), EndpointPort).String(), PortName: "http", Ready: true,
			}},
		})
	}
	store.SetService(config.Service{Name: ClientService, Namespace: config.DefaultNamespace})
	store.SetProxy(config.Proxy{ID: ClientProxyID, Service: ClientService, Namespace: config.DefaultNamespace})
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	ctl, err := controller.New(controller.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Token: hex.EncodeToString(tok), Store: store,
		Logger: slog.New(slog.DiscardHandler), ScrapeInterval: time.Hour,
	})
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, AnchorsFile), ctl.TrustAnchorsPEM(), 0o644); err != nil {
		return fmt.Errorf("write trust anchors: %w", err)
	}
	join, err := ctl.IssueToken(config.DefaultNamespace, ClientService)
	if err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte(join), 0o600); err != nil {
		return fmt.Errorf("write join token: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	select {
	case <-ctl.Ready():
	case err := <-done:
		return fmt.Errorf("controller: %w", err)
	}
	fmt.Fprintf(out, "ready %s\n", ctl.GRPCAddr())
	// The harness closes the role's input to stop it.
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
		}
		cancel()
	}()
	return <-done
}
