package inbound

import (
	"net"

	"weft.dev/weft/internal/proxy/conncount"
	"weft.dev/weft/internal/proxy/metrics"
)

// countConn counts an HTTP connection open in the TCP metrics of its tls
// label and wraps it to count its bytes; closeCounted records its end.
func (s *Server) countConn(c net.Conn, ci connInfo) (*conncount.Conn, *metrics.Service) {
	m := s.metrics.WithTLS(ci.tls)
	m.TCPOpen()
	return conncount.New(c), m
}

// closeCounted counts a connection from countConn closed, with its bytes.
func closeCounted(m *metrics.Service, c *conncount.Conn) {
	read, written := c.Counts()
	m.TCPClose(read, written)
}
