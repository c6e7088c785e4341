package outbound

import (
	"net"

	"weft.dev/weft/internal/proxy/conncount"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/transport"
)

// countConn counts an HTTP connection of the workload open in the
// destination's TCP metrics and wraps it to count its bytes; closeCounted
// records its end. Opaque connections are counted by forwardTCP, once
// their endpoint (and so their tls label) is known.
func (s *Server) countConn(st *state, c net.Conn) (*conncount.Conn, *metrics.Service) {
	m := s.connMetrics(st)
	m.TCPOpen()
	return conncount.New(c), m
}

// connMetrics returns the metrics of the HTTP connections to the
// destination of st (nil: no snapshot yet). Their requests may go to
// several endpoints; the connection counts as tls="true" when the
// destination has an endpoint reached over mutual TLS.
func (s *Server) connMetrics(st *state) *metrics.Service {
	if st == nil {
		return s.cfg.Metrics.Service(metrics.Outbound, s.Service())
	}
	if transport.Encrypted(s.cfg.Transport) {
		for _, u := range st.upstreams {
			if u.Meshed() {
				return st.metrics.WithTLS(true)
			}
		}
	}
	return st.metrics
}

// closeCounted counts a connection from countConn closed, with its bytes.
func closeCounted(m *metrics.Service, c *conncount.Conn) {
	read, written := c.Counts()
	m.TCPClose(read, written)
}
