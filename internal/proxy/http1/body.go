package http1

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"sync"
)

// copyBufSize is the size of the pooled buffers used to stream large bodies
// without going through the bufio buffers.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// ioError tells which side of a copy failed: reading the source or writing
// the destination. The caller answers differently (a broken client versus
// a broken upstream).
type ioError struct {
	read bool
	err  error
}

func (e *ioError) Error() string {
	if e.read {
		return "read: " + e.err.Error()
	}
	return "write: " + e.err.Error()
}

func (e *ioError) Unwrap() error { return e.err }

func readErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &ioError{read: true, err: err}
}

func writeErr(err error) error { return &ioError{err: err} }

// isReadErr reports whether err came from reading the source of a copy
// (including a malformed chunked body).
func isReadErr(err error) bool {
	var ie *ioError
	if errors.As(err, &ie) {
		return ie.read
	}
	_, ok := errIsHead(err)
	return ok
}

// copier streams bodies. It borrows a large buffer from copyBufs only while
// a body larger than the bufio buffer is in flight.
type copier struct {
	big     *[]byte
	scratch [24]byte
}

func (c *copier) buffer() []byte {
	if c.big == nil {
		c.big = copyBufs.Get().(*[]byte)
	}
	return *c.big
}

func (c *copier) release() {
	if c.big != nil {
		copyBufs.Put(c.big)
		c.big = nil
	}
}

// copyBody streams a body of the given kind from src to dst. n is the
// length of a bodyLength body. outChunked writes chunked framing to dst
// (dst's head announced chunked); otherwise a chunked body is decoded and
// its trailers dropped. dst is flushed whenever reading src would block, so
// streamed bodies (server-sent events, long polls) are relayed as they
// come. maxTrailer bounds the trailer section.
func (c *copier) copyBody(dst *bufio.Writer, src *bufio.Reader, kind bodyKind, n int64, outChunked bool, maxTrailer int) (int64, error) {
	defer c.release()
	switch kind {
	case bodyLength:
		if outChunked {
			if err := c.writeChunkSize(dst, n); err != nil {
				return 0, err
			}
		}
		w, err := c.copyN(dst, src, n)
		if err != nil || !outChunked {
			return w, err
		}
		if _, err := dst.WriteString("\r\n0\r\n\r\n"); err != nil {
			return w, writeErr(err)
		}
		return w, nil
	case bodyChunked:
		return c.copyChunked(dst, src, outChunked, maxTrailer, nil)
	case bodyUntilClose:
		return c.copyUntilEOF(dst, src)
	}
	return 0, nil
}

// fill makes at least one byte available in src, flushing dst first if the
// read would block.
func fill(dst *bufio.Writer, src *bufio.Reader) error {
	if src.Buffered() > 0 {
		return nil
	}
	if dst.Buffered() > 0 {
		if err := dst.Flush(); err != nil {
			return writeErr(err)
		}
	}
	if _, err := src.Peek(1); err != nil {
		return readErr(err)
	}
	return nil
}

// copyN copies exactly n bytes.
func (c *copier) copyN(dst *bufio.Writer, src *bufio.Reader, n int64) (int64, error) {
	var written int64
	for written < n {
		left := n - written
		if src.Buffered() == 0 && left > int64(src.Size()) {
			// Large remainder: read straight into a big buffer (bufio
			// bypasses its own buffer for such reads) and write it
			// straight out (bufio does the same when it is empty).
			if dst.Buffered() > 0 {
				if err := dst.Flush(); err != nil {
					return written, writeErr(err)
				}
			}
			b := c.buffer()
			if int64(len(b)) > left {
				b = b[:left]
			}
			m, err := src.Read(b)
			if m > 0 {
				if _, werr := dst.Write(b[:m]); werr != nil {
					return written, writeErr(werr)
				}
				written += int64(m)
			}
			if err != nil {
				return written, readErr(err)
			}
			continue
		}
		if err := fill(dst, src); err != nil {
			return written, err
		}
		k := src.Buffered()
		if int64(k) > left {
			k = int(left)
		}
		p, _ := src.Peek(k)
		if _, err := dst.Write(p); err != nil {
			return written, writeErr(err)
		}
		_, _ = src.Discard(k)
		written += int64(k)
	}
	return written, nil
}

func (c *copier) copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) (int64, error) {
	var written int64
	for {
		if err := fill(dst, src); err != nil {
			var ie *ioError
			if errors.As(err, &ie) && ie.read && errors.Is(ie.err, io.ErrUnexpectedEOF) {
				return written, nil
			}
			return written, err
		}
		k := src.Buffered()
		p, _ := src.Peek(k)
		if _, err := dst.Write(p); err != nil {
			return written, writeErr(err)
		}
		_, _ = src.Discard(k)
		written += int64(k)
	}
}

func (c *copier) writeChunkSize(dst *bufio.Writer, n int64) error {
	b := strconv.AppendInt(c.scratch[:0], n, 16)
	b = append(b, '\r', '\n')
	if _, err := dst.Write(b); err != nil {
		return writeErr(err)
	}
	return nil
}

// maxChunkSizeDigits bounds the hex digits of a chunk size: 15 digits stay
// below 2^60, so a size can never overflow int64 (chunk-size overflow makes
// a naive parser wrap to a small or negative length: smuggling).
const maxChunkSizeDigits = 15

// copyChunked relays a chunked body, chunk by chunk, keeping each chunk's
// size (so streaming boundaries survive) and dropping chunk extensions.
// Trailer fields are validated like header fields; when outChunked they
// are forwarded except those that must never appear in a trailer. onTrailer,
// if set, sees each accepted trailer field (for tests).
func (c *copier) copyChunked(dst *bufio.Writer, src *bufio.Reader, outChunked bool, maxTrailer int, onTrailer func(field)) (int64, error) {
	var written int64
	for {
		if err := fill(dst, src); err != nil {
			return written, err
		}
		size, err := readChunkSize(src)
		if err != nil {
			return written, err
		}
		if size == 0 {
			break
		}
		if outChunked {
			if err := c.writeChunkSize(dst, size); err != nil {
				return written, err
			}
		}
		w, err := c.copyN(dst, src, size)
		written += w
		if err != nil {
			return written, err
		}
		if err := fill(dst, src); err != nil {
			return written, err
		}
		// The chunk data must be followed by exactly CRLF: more data
		// than the size declared is a desync attempt.
		crlf, err := src.Peek(2)
		if err != nil {
			return written, readErr(err)
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return written, invalid("chunk data longer than its declared size")
		}
		_, _ = src.Discard(2)
		if outChunked {
			if _, err := dst.WriteString("\r\n"); err != nil {
				return written, writeErr(err)
			}
		}
	}
	if outChunked {
		if _, err := dst.WriteString("0\r\n"); err != nil {
			return written, writeErr(err)
		}
	}
	if err := c.copyTrailer(dst, src, outChunked, maxTrailer, onTrailer); err != nil {
		return written, err
	}
	return written, nil
}

// readChunkSize reads a chunk-size line: hex digits, optionally a chunk
// extension after ";", then CRLF.
func readChunkSize(src *bufio.Reader) (int64, error) {
	line, err := src.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return 0, invalid("chunk size line too long")
	}
	if err != nil {
		return 0, readErr(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, invalid("bare LF in chunk size line")
	}
	line = line[:len(line)-2]
	var size int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		if i >= maxChunkSizeDigits {
			return 0, invalid("chunk size too large")
		}
		size = size<<4 | int64(d)
	}
	if i == 0 {
		return 0, invalid("invalid chunk size")
	}
	ext := line[i:]
	for len(ext) > 0 && (ext[0] == ' ' || ext[0] == '\t') {
		ext = ext[1:]
	}
	if len(ext) > 0 {
		if ext[0] != ';' {
			return 0, invalid("invalid chunk size")
		}
		for _, c := range ext {
			// A bare CR or a control inside an extension is where
			// lenient parsers disagree on the line end.
			if c < 0x20 && c != '\t' || c == 0x7f {
				return 0, invalid("control character in chunk extension")
			}
		}
	}
	return size, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// copyTrailer reads the trailer section after the last chunk and, when
// outChunked, writes the forwardable fields and the final CRLF.
func (c *copier) copyTrailer(dst *bufio.Writer, src *bufio.Reader, outChunked bool, max int, onTrailer func(field)) error {
	total := 0
	count := 0
	for {
		if err := fill(dst, src); err != nil {
			return err
		}
		line, err := src.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return invalid("trailer field too long")
		}
		if err != nil {
			return readErr(err)
		}
		total += len(line)
		if total > max {
			return invalid("trailer section too large")
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return invalid("bare LF in trailer section")
		}
		if len(line) == 2 {
			break
		}
		if count++; count > maxFields {
			return invalid("too many trailer fields")
		}
		// The line is only borrowed from src: copy it (trailers are
		// rare) before reading on.
		f, err := parseField(string(line[:len(line)-2]))
		if err != nil {
			return err
		}
		if forbiddenTrailer(f.name) {
			continue
		}
		if onTrailer != nil {
			onTrailer(f)
		}
		if outChunked {
			if err := writeField(dst, f.name, f.value); err != nil {
				return writeErr(err)
			}
		}
	}
	if outChunked {
		if _, err := dst.WriteString("\r\n"); err != nil {
			return writeErr(err)
		}
	}
	return nil
}

// forbiddenTrailer names fields that must not be honoured in a trailer
// (RFC 9110 section 6.5.1): framing, routing and connection control. A
// Content-Length or Host smuggled in a trailer and merged into the head by
// a later hop is a smuggling vector.
func forbiddenTrailer(name string) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "TE")
	case 4:
		return equalFold(name, "Host")
	case 7:
		return equalFold(name, "Trailer") || equalFold(name, "Upgrade")
	case 10:
		return equalFold(name, "Connection") || equalFold(name, "Keep-Alive")
	case 14:
		return equalFold(name, "Content-Length")
	case 16:
		return equalFold(name, "Proxy-Connection")
	case 17:
		return equalFold(name, "Transfer-Encoding")
	}
	return false
}

func writeField(w *bufio.Writer, name, value string) error {
	_, _ = w.WriteString(name)
	_, _ = w.WriteString(": ")
	_, _ = w.WriteString(value)
	_, err := w.WriteString("\r\n")
	return err
}
