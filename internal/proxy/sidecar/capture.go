package sidecar

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/capture"
	"weft.dev/weft/internal/proxy/discovery"
	"weft.dev/weft/internal/proxy/inbound"
	"weft.dev/weft/internal/proxy/outbound"
)

// captureListener is a bound capture listener: inbound or outbound.
type captureListener struct {
	inbound bool
	ln      net.Listener
}

// bindCapture opens the capture listeners that are configured.
func (s *Sidecar) bindCapture() ([]captureListener, error) {
	var out []captureListener
	var lc net.ListenConfig
	for _, c := range []struct {
		flag, addr string
		inbound    bool
	}{{"--inbound-capture", s.cfg.InboundCapture, true}, {"--outbound-capture", s.cfg.OutboundCapture, false}} {
		if c.addr == "" {
			continue
		}
		ln, err := lc.Listen(context.Background(), "tcp", c.addr)
		if err != nil {
			for _, o := range out {
				o.ln.Close()
			}
			return nil, fmt.Errorf("%s: listen on %s: %w (is another process using it?)", c.flag, c.addr, err)
		}
		out = append(out, captureListener{inbound: c.inbound, ln: ln})
	}
	return out, nil
}

// serveCapture serves one capture listener until ctx ends.
func (s *Sidecar) serveCapture(ctx context.Context, disc *discovery.Client, c captureListener) error {
	if c.inbound {
		return capture.Serve(ctx, c.ln, capture.Config{
			Name: "inbound capture",
			Key: func(dst netip.AddrPort) (string, error) {
				return strconv.Itoa(int(dst.Port())), nil
			},
			New:    func(port string) capture.Server { return s.inboundFor(disc, port) },
			Logger: s.log,
		})
	}
	return capture.Serve(ctx, c.ln, capture.Config{
		Name: "outbound capture",
		Key: func(dst netip.AddrPort) (string, error) {
			return dst.String(), nil
		},
		New:    func(dst string) capture.Server { return s.outboundFor(disc, dst) },
		Logger: s.log,
	})
}

// inboundFor is the inbound server of application port port, as an
// --inbound listener for 127.0.0.1:port would be.
func (s *Sidecar) inboundFor(disc *discovery.Client, port string) *inbound.Server {
	app := net.JoinHostPort("127.0.0.1", port)
	proto := config.ProtocolDetect
	if p, _ := strconv.ParseUint(port, 10, 16); s.cfg.OpaquePorts.Contains(uint16(p)) {
		proto = config.ProtocolTCP
	}
	return inbound.New(inbound.Config{
		App: app, Protocol: proto, Declared: declared(disc, app), Strict: strict(disc, app),
		Service: s.service, Transport: s.tr, Metrics: s.metrics,
		DetectTimeout: s.cfg.DetectTimeout, DrainTimeout: s.cfg.DrainTimeout, Logger: s.log,
		Authz:     s.authzPolicy(disc, app),
		RateLimit: rateLimit(disc, app),
	})
}

// outboundFor is the outbound server of original destination dst
// ("IP:port"), which the controller resolves by address; destinations it
// does not know are passed through.
func (s *Sidecar) outboundFor(disc *discovery.Client, dst string) *outbound.Server {
	proto := config.ProtocolDetect
	if ap, err := netip.ParseAddrPort(dst); err == nil && s.cfg.OpaquePorts.Contains(ap.Port()) {
		proto = config.ProtocolTCP
	}
	return outbound.New(outbound.Config{
		Authority: dst, Namespace: s.cfg.Namespace, Protocol: proto, Discovery: disc,
		Transport: s.tr, Metrics: s.metrics, DetectTimeout: s.cfg.DetectTimeout, DrainTimeout: s.cfg.DrainTimeout,
		ConfigWait: s.cfg.ConfigWait, Logger: s.log, Passthrough: dst, Transient: true,
	})
}
