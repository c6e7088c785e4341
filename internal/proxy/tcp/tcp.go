// Package tcp forwards opaque byte streams between a downstream connection
// and an upstream one, in both directions, with half-close: when one side
// finishes sending, the other side sees EOF but can still answer.
//
// Any proxy package may import tcp. Forward may be called concurrently for
// different connection pairs.
package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// bufSize is the copy buffer size when the kernel cannot splice.
const bufSize = 32 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Forward copies down→up and up→down until both directions reached EOF,
// either side failed, or ctx ended; then it closes both connections. It
// returns the bytes read from down and written to down, and the first
// error other than a clean EOF.
func Forward(ctx context.Context, down, up net.Conn) (fromDown, toDown int64, err error) {
	stop := context.AfterFunc(ctx, func() {
		down.Close()
		up.Close()
	})
	defer stop()
	defer down.Close()
	defer up.Close()

	errc := make(chan error, 1)
	go func() {
		var err error
		fromDown, err = pipe(up, down)
		errc <- err
	}()
	toDown, err2 := pipe(down, up)
	if err2 != nil {
		// Unblock the other direction.
		down.Close()
		up.Close()
	}
	err1 := <-errc
	if err := errors.Join(err1, err2); err != nil && ctx.Err() == nil {
		return fromDown, toDown, err
	}
	return fromDown, toDown, nil
}

// pipe copies src to dst and half-closes dst when src ends cleanly.
func pipe(dst, src net.Conn) (int64, error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	n, err := io.CopyBuffer(dst, src, *bp)
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		return n, err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return n, err
		}
		return n, nil
	}
	// Without half-close the only way to signal EOF is closing.
	return n, dst.Close()
}
