package sidecar

import (
	"net"
	"strconv"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/authz"
	"weft.dev/weft/internal/proxy/discovery"
)

// authzPolicy returns the authorization policy of the application port of
// app from the newest inbound snapshot, compiled once per snapshot, with
// its decisions counted in the proxy's metrics.
func (s *Sidecar) authzPolicy(disc *discovery.Client, app string) func() *authz.Policy {
	_, portStr, _ := net.SplitHostPort(app)
	port, _ := strconv.ParseUint(portStr, 10, 32)
	m := authz.NewMetrics(s.metrics, s.service)
	t := authz.NewTable(func() *meshv1.InboundSnapshot { return disc.Inbound().Load() }, m, s.log)
	return func() *authz.Policy { return t.Port(uint32(port)) }
}
