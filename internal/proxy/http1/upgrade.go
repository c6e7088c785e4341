package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
)

// tunnel splices bytes both ways between the client and the upstream after
// a 101 Switching Protocols or a successful CONNECT, until either side
// closes; then it closes both. The upstream connection is never reused.
// Bytes already read into either side's buffer are sent first.
func (cc *clientConn) tunnel(uc *upstreamConn) error {
	cc.clearDeadline()
	done := make(chan error, 1)
	go func() {
		done <- pipe(uc.conn, cc.br)
		// The client finished: end the other direction too.
		_ = cc.c.Close()
		_ = uc.conn.Close()
	}()
	err := pipe(cc.c, uc.br)
	_ = uc.conn.Close()
	_ = cc.c.Close()
	err2 := <-done
	uc.close()
	if err == nil {
		err = err2
	}
	return err
}

// pipe copies src (its buffered bytes first) to dst until src ends. When
// both ends are TCP connections the kernel splices the bytes.
func pipe(dst net.Conn, src *bufio.Reader) error {
	_, err := src.WriteTo(dst)
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
