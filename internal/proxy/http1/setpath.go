package http1

import "strings"

// SetPath replaces the path of the request target, keeping its query and,
// for an absolute-form target, its scheme and authority. The request is
// forwarded with the new target, and Path and Target report it from then
// on: a caller that authorised the normalised path forwards exactly that
// path, never the spelling the client sent. Call it only when the path
// changes; it allocates the new target. It does nothing for CONNECT and
// asterisk-form targets, which have no path.
func (h *RequestHead) SetPath(p string) {
	t := h.target
	if h.method == "CONNECT" || t == "*" || t == "" {
		return
	}
	prefix := ""
	rest := t
	if t[0] != '/' {
		// absolute-form: "http://host:port/path?query"
		i := strings.Index(t, "://")
		if i < 0 {
			return
		}
		end := strings.IndexAny(t[i+3:], "/?")
		if end < 0 {
			end = len(t) - i - 3
		}
		prefix, rest = t[:i+3+end], t[i+3+end:]
	}
	query := ""
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		query = rest[q:]
	}
	h.target = prefix + p + query
	h.path = p
}
