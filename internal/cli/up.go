package cli

import (
	"fmt"
	"net"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/local"
)

type upFlags struct {
	file          string
	httpAddr      string
	grpcAddr      string
	readyTimeout  time.Duration
	proxyLogLevel string
	identity      local.IdentityFiles
}

func (e *env) upCmd() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up [-f mesh.yaml]",
		Short: "Run a local mesh: the controller, the workloads and one proxy per instance",
		Long: `Run a local mesh on this machine until Ctrl-C: the embedded controller, every
workload of the mesh file with its own weft-proxy, and an ingress proxy per
exposed service. Without -f, the demo application of Weft's source tree runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			go func() {
				// A second Ctrl-C ends weft at once; the kernel then kills
				// the children (Pdeathsig).
				<-ctx.Done()
				stop()
			}()
			err := local.Up(ctx, local.Options{
				MeshFile: f.file, StateDir: e.stateDir,
				HTTPAddr: f.httpAddr, GRPCAddr: f.grpcAddr,
				ReadyTimeout: f.readyTimeout, ProxyLogLevel: f.proxyLogLevel,
				Identity: f.identity, Out: e.stdout,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "stopped.")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "mesh file declaring the workloads (default: the demo of Weft's source tree)")
	fl.StringVar(&f.httpAddr, "http-addr", local.DefaultHTTPAddr, "listen address of the controller's HTTP API")
	fl.StringVar(&f.grpcAddr, "grpc-addr", local.DefaultGRPCAddr, "listen address of the controller's proxy API (gRPC)")
	fl.DurationVar(&f.readyTimeout, "ready-timeout", local.DefaultReadyTimeout, "how long to wait for every workload and proxy to be ready")
	fl.StringVar(&f.proxyLogLevel, "proxy-log-level", "", "log level of the proxies (debug, info, warn, error; default: the proxy's own)")
	fl.StringVar(&f.identity.TrustAnchors, "identity-trust-anchors", "", "PEM file of the mesh's trust anchors (default: generated into the state directory)")
	fl.StringVar(&f.identity.IssuerCert, "identity-issuer-cert", "", "PEM file of the issuer certificate, signed by a trust anchor (with --identity-trust-anchors)")
	fl.StringVar(&f.identity.IssuerKey, "identity-issuer-key", "", "PEM file of the issuer's private key (with --identity-trust-anchors)")
	return cmd
}

func (f *upFlags) validate() error {
	for _, a := range []struct{ flag, value string }{{"--http-addr", f.httpAddr}, {"--grpc-addr", f.grpcAddr}} {
		if err := checkListenAddr(a.value); err != nil {
			return fmt.Errorf("%s %q: %v; give host:port, e.g. 127.0.0.1:8085", a.flag, a.value, err)
		}
	}
	if f.httpAddr == f.grpcAddr {
		return fmt.Errorf("--http-addr and --grpc-addr are both %s; give them different ports", f.httpAddr)
	}
	if f.readyTimeout <= 0 {
		return fmt.Errorf("--ready-timeout %s: give a positive duration, e.g. 60s", f.readyTimeout)
	}
	switch f.proxyLogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--proxy-log-level %q: give debug, info, warn or error", f.proxyLogLevel)
	}
	return nil
}

func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}
