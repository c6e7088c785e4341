package http1

import "strings"

// field is one header field line: name as received, value without the
// surrounding optional whitespace. Both are substrings of the head's raw
// text, so parsing a head allocates the text once and nothing per field.
type field struct {
	name, value string
}

// fields is the ordered list of header fields of a head or a trailer.
type fields []field

// get returns the first value of the field named name (case-insensitive).
func (fs fields) get(name string) string {
	for i := range fs {
		if equalFold(fs[i].name, name) {
			return fs[i].value
		}
	}
	return ""
}

// values returns every value of the field named name, in order.
func (fs fields) values(name string) []string {
	var out []string
	for i := range fs {
		if equalFold(fs[i].name, name) {
			out = append(out, fs[i].value)
		}
	}
	return out
}

// bodyKind is how a message's body is delimited (RFC 9112 section 6).
type bodyKind uint8

const (
	bodyNone       bodyKind = iota // no body at all
	bodyLength                     // Content-Length bytes
	bodyChunked                    // chunked transfer coding, maybe trailers
	bodyUntilClose                 // response read until the connection closes
)

// RequestHead is a parsed, validated request head. Its accessors do not
// allocate except Values. It is only valid during the exchange that parsed
// it: the Server reuses it for the next request on the connection.
type RequestHead struct {
	raw     string // the head's text: every string below points into it
	method  string
	target  string
	path    string
	host    string
	proto   string // "HTTP/1.1" or "HTTP/1.0"
	minor   int    // 1 or 0
	fields  fields
	hasHost bool

	body          bodyKind
	contentLength int64

	keepAlive      bool     // the client allows reusing the connection
	expectContinue bool     // Expect: 100-continue on an HTTP/1.1 request
	teTrailers     bool     // TE lists "trailers"
	upgrade        string   // Upgrade value to forward, "" if none
	connTokens     []string // field names listed in Connection (lower or mixed case)
}

// Method returns the request method, e.g. "GET".
func (h *RequestHead) Method() string { return h.method }

// Target returns the request-target exactly as received.
func (h *RequestHead) Target() string { return h.target }

// Path returns the path part of the target without the query; "*" for
// OPTIONS *, "" for CONNECT.
func (h *RequestHead) Path() string { return h.path }

// Host returns the authority of an absolute-form or CONNECT target, else
// the Host header ("" if an HTTP/1.0 request has none).
func (h *RequestHead) Host() string { return h.host }

// Proto returns "HTTP/1.1" or "HTTP/1.0".
func (h *RequestHead) Proto() string { return h.proto }

// Header returns the first value of the named header (case-insensitive),
// or "" if absent.
func (h *RequestHead) Header(name string) string { return h.fields.get(name) }

// Values returns all values of the named header, in order.
func (h *RequestHead) Values(name string) []string { return h.fields.values(name) }

// ContentLength returns the declared body length, -1 for a chunked body.
func (h *RequestHead) ContentLength() int64 {
	switch h.body {
	case bodyChunked:
		return -1
	case bodyLength:
		return h.contentLength
	}
	return 0
}

// VisitHeaders calls fn for each header field in order, names as received.
func (h *RequestHead) VisitHeaders(fn func(name, value string)) {
	for _, f := range h.fields {
		fn(f.name, f.value)
	}
}

func (h *RequestHead) reset() {
	tokens := h.connTokens[:0]
	fs := h.fields[:0]
	*h = RequestHead{fields: fs, connTokens: tokens}
}

// ResponseHead is a parsed, validated response head, valid during the
// exchange that read it.
type ResponseHead struct {
	raw    string
	proto  string
	status int
	reason string
	minor  int
	fields fields

	hasLength     bool
	contentLength int64
	chunked       bool // the final transfer coding is chunked
	hasTE         bool
	close         bool // the upstream will close the connection
	connTokens    []string
}

// Status returns the status code.
func (h *ResponseHead) Status() int { return h.status }

// Reason returns the reason phrase as received.
func (h *ResponseHead) Reason() string { return h.reason }

// Proto returns "HTTP/1.1" or "HTTP/1.0".
func (h *ResponseHead) Proto() string { return h.proto }

// Header returns the first value of the named header (case-insensitive).
func (h *ResponseHead) Header(name string) string { return h.fields.get(name) }

// Values returns all values of the named header, in order.
func (h *ResponseHead) Values(name string) []string { return h.fields.values(name) }

func (h *ResponseHead) reset() {
	tokens := h.connTokens[:0]
	fs := h.fields[:0]
	*h = ResponseHead{fields: fs, connTokens: tokens}
}

// equalFold reports whether ASCII strings a and b are equal ignoring case.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether s begins with prefix, ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

// nextToken returns the next comma-separated element of a list field value
// (RFC 9110 section 5.6.1), trimmed of optional whitespace, and the rest.
// Empty elements are allowed by the grammar and returned as "".
func nextToken(s string) (tok, rest string) {
	i := strings.IndexByte(s, ',')
	if i < 0 {
		return trimOWS(s), ""
	}
	return trimOWS(s[:i]), s[i+1:]
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// listContains reports whether a comma-separated list value holds token
// (case-insensitive).
func listContains(v, token string) bool {
	for v != "" {
		var t string
		t, v = nextToken(v)
		if equalFold(t, token) {
			return true
		}
	}
	return false
}

// tokenChars marks tchar (RFC 9110 section 5.6.2).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChars[s[i]] {
			return false
		}
	}
	return true
}

// validValue reports whether s holds only field-content characters:
// visible ASCII, space, tab and obs-text. NUL, CR, LF and other controls are
// refused: a CR or LF smuggled into a value would split the head when the
// value is forwarded (response splitting / header injection).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
