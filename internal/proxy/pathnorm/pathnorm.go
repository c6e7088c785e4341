// Package pathnorm normalises the path of an HTTP request target once, so
// that authorization decides on the same path the application receives.
// A proxy that checks one spelling of a path and forwards another is the
// root of authorization bypasses ("/public/../admin" allowed as /public/*,
// served as /admin by the application).
//
// Normalize applies, in this order:
//
//  1. Refusals: a path must start with "/"; "#" (a fragment never belongs
//     in a request target), "\" and "%5C" (Windows, IIS and some Node
//     routers treat a backslash as a separator), "%2F" (most servers decode
//     it into a separator after routing: "/public%2F..%2Fadmin"), "%00" (C
//     string truncation: "/public.txt%00/admin"), control characters,
//     invalid percent-encodings, and a segment that is "." or ".." followed
//     by ";" (Tomcat and Jetty drop path parameters before resolving dot
//     segments: "/public/..;/admin"). The caller answers 400.
//  2. Percent-decoding of unreserved characters only (RFC 3986 section
//     2.3: ALPHA, DIGIT, "-", ".", "_", "~"), once: "%2e%2e" becomes "..",
//     "%252F" stays "%252F" (it decodes to the three characters "%2F", so
//     it is never a separator). Other encodings keep their bytes with
//     upper-case hex digits; bytes above 0x7F are percent-encoded.
//  3. Duplicate slashes collapse: "//admin" is "/admin" (RFC 3986 keeps
//     empty segments, but most application routers ignore them, so two
//     spellings of one resource would otherwise exist).
//  4. Dot segments are removed (RFC 3986 section 5.2.4).
//
// Case is kept: paths are case-sensitive (RFC 3986 section 6.2.2.1), so
// "/ADMIN" is a different path from "/admin", as in Envoy and Linkerd.
// ";" is an ordinary segment character (matrix parameters are not
// stripped): "/admin;x" is not "/admin" to the policy, and it is forwarded
// as "/admin;x". Because Weft's rules only allow, a path no rule names is
// denied whatever its spelling.
//
// The result is idempotent: Normalize(Normalize(p)) == Normalize(p), and it
// never contains "//" or a "." or ".." segment.
//
// Any proxy package may import pathnorm. Its functions are pure and safe
// for concurrent use.
package pathnorm

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a path that cannot be normalised; the request is answered 400.
type Error struct {
	// Reason is a short sentence for the proxy's error answer.
	Reason string
}

func (e *Error) Error() string { return "invalid request path: " + e.Reason }

// ErrNotOrigin is returned for a path that does not start with "/".
var ErrNotOrigin = errors.New("invalid request path: must start with '/'")

func fail(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

const upperHex = "0123456789ABCDEF"

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

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// IsNormal reports whether p is already normal, without allocating: the
// fast path of a proxy forwarding well-formed paths.
func IsNormal(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) {
				return false
			}
			h, ok1 := unhex(p[i+1])
			l, ok2 := unhex(p[i+2])
			b := h<<4 | l
			// Lower-case hex, or an encoding Normalize decodes or refuses.
			if !ok1 || !ok2 || p[i+1] >= 'a' || p[i+2] >= 'a' || unreserved(b) || b == 0 || b == '/' || b == '\\' {
				return false
			}
			i += 2
		case c == '/':
			if i > 0 && !segmentOK(p[segStart:i]) {
				return false
			}
			segStart = i + 1
		case c <= 0x20 || c >= 0x7f || c == '#' || c == '\\':
			return false
		}
	}
	return segmentOK(p[segStart:]) || segStart == len(p)
}

// segmentOK reports whether a segment (not the last, empty one) may stand
// as is: not empty, not a dot segment, not a dot segment with parameters.
func segmentOK(seg string) bool {
	if seg == "" {
		return false
	}
	name, _, _ := strings.Cut(seg, ";")
	return name != "." && name != ".."
}

// Normalize returns the normal form of the path p (no query); see the
// package comment. It returns p itself, without allocating, when p is
// already normal.
func Normalize(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", ErrNotOrigin
	}
	if IsNormal(p) {
		return p, nil
	}
	// Pass 1: check and decode.
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) {
				return "", fail("truncated percent-encoding %q", p[i:])
			}
			h, ok1 := unhex(p[i+1])
			l, ok2 := unhex(p[i+2])
			if !ok1 || !ok2 {
				return "", fail("invalid percent-encoding %q", p[i:i+3])
			}
			v := h<<4 | l
			switch {
			case v == 0:
				return "", fail("%%00 (a NUL byte) is not allowed in a path")
			case v == '/':
				return "", fail("%%2F (an encoded '/') is not allowed in a path: applications disagree on whether it separates segments")
			case v == '\\':
				return "", fail("%%5C (an encoded '\\') is not allowed in a path: some applications treat it as '/'")
			case unreserved(v):
				b.WriteByte(v)
			default:
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&0xf])
			}
			i += 2
		case c == '#':
			return "", fail("'#' is not allowed in a request path (a fragment is never sent)")
		case c == '\\':
			return "", fail("'\\' is not allowed in a path: some applications treat it as '/'")
		case c < 0x20 || c == 0x7f || c == ' ':
			return "", fail("control character 0x%02X in the path", c)
		case c >= 0x80:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	decoded := b.String()
	// Pass 2: segments, without empty ones, with dot segments resolved.
	var out []string
	segs := strings.Split(decoded[1:], "/")
	trailing := false
	for _, seg := range segs {
		name, _, params := strings.Cut(seg, ";")
		if params && (name == "." || name == "..") {
			return "", fail("dot segment with parameters %q is not allowed: some applications resolve it as %q", seg, name)
		}
		// The path ends with "/" when its last segment is empty or a dot
		// segment ("/a/." is "/a/", "/a/b/.." is "/a/").
		trailing = seg == "" || seg == "." || seg == ".."
		switch seg {
		case "", ".":
		case "..":
			if n := len(out); n > 0 {
				out = out[:n-1]
			}
		default:
			out = append(out, seg)
		}
	}
	if len(out) == 0 {
		return "/", nil
	}
	n := "/" + strings.Join(out, "/")
	if trailing {
		n += "/"
	}
	return n, nil
}
