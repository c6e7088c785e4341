package http1

import (
	"bufio"
	"io"
	"net/http"
	"strings"
)

// DefaultMaxHeaderBytes bounds a request head (request line, fields and the
// empty line) unless Server.MaxHeaderBytes says otherwise.
const DefaultMaxHeaderBytes = 64 << 10

// maxFields bounds the number of fields in a head or a trailer section: a
// head of thousands of tiny fields is a CPU attack on every hop.
const maxFields = 256

// maxEmptyLines is how many empty lines before a request line are skipped
// (RFC 9112 section 2.2 asks for robustness to at least one).
const maxEmptyLines = 4

// headError is a head that must be refused. status is what a client gets
// for its request (400, 431, 505); for a response it is always answered
// 502 by the caller.
type headError struct {
	status int
	msg    string
}

func (e *headError) Error() string { return e.msg }

func invalid(msg string) error { return &headError{status: http.StatusBadRequest, msg: msg} }

var (
	errHeadTooLarge = &headError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "head larger than the limit"}
	errTooManyField = &headError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "more than 256 header fields"}
)

// readHead reads one head (up to and including its empty line) from br and
// appends it to dst. It reads line by line, so it never consumes a byte of
// the body. skipEmpty skips up to maxEmptyLines CRLF lines before the first
// line (requests only). It returns io.EOF if the connection closed before
// the first byte, io.ErrUnexpectedEOF if it closed inside the head, and
// errHeadTooLarge past max bytes.
func readHead(br *bufio.Reader, dst []byte, max int, skipEmpty bool) ([]byte, error) {
	total, lineStart, skipped := 0, len(dst), 0
	start := len(dst)
	for {
		frag, err := br.ReadSlice('\n')
		total += len(frag)
		if total > max {
			return dst, errHeadTooLarge
		}
		dst = append(dst, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				if len(dst) == start && skipped == 0 {
					return dst, io.EOF
				}
				return dst, io.ErrUnexpectedEOF
			}
			return dst, err
		}
		line := dst[lineStart:]
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			if skipEmpty && lineStart == start && len(line) == 2 && skipped < maxEmptyLines {
				skipped++
				dst = dst[:start]
				continue
			}
			return dst, nil
		}
		lineStart = len(dst)
	}
}

// nextLine splits the first line off s. Every line must end in CRLF: a bare
// LF is refused because a server that accepts it as a line end and a proxy
// that does not (or the reverse) disagree on where the head ends (request
// smuggling). A bare CR never reaches a valid line either: the character
// checks on each part of the line refuse it.
func nextLine(s string) (line, rest string, err error) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return "", "", invalid("head does not end with an empty line")
	}
	if i == 0 || s[i-1] != '\r' {
		return "", "", invalid("bare LF line ending (lines must end with CRLF)")
	}
	return s[:i-1], s[i+1:], nil
}

// parseFields parses field lines up to the empty line ending the head or
// trailer section in s and appends them to fs.
func parseFields(s string, fs fields) (fields, error) {
	for {
		line, rest, err := nextLine(s)
		if err != nil {
			return fs, err
		}
		s = rest
		if line == "" {
			if s != "" {
				return fs, invalid("data after the end of the head")
			}
			return fs, nil
		}
		if len(fs) >= maxFields {
			return fs, errTooManyField
		}
		f, err := parseField(line)
		if err != nil {
			return fs, err
		}
		fs = append(fs, f)
	}
}

// parseField parses one "name: value" line.
func parseField(line string) (field, error) {
	if line[0] == ' ' || line[0] == '\t' {
		// Obsolete line folding (RFC 9112 section 5.2): a continuation
		// line that one hop joins and another treats as a new field is a
		// smuggling vector; refuse it.
		return field{}, invalid("obsolete line folding in header")
	}
	colon := strings.IndexByte(line, ':')
	if colon < 0 {
		return field{}, invalid("header line without a colon")
	}
	name := line[:colon]
	if name == "" {
		return field{}, invalid("header with an empty name")
	}
	if c := name[len(name)-1]; c == ' ' || c == '\t' {
		// Whitespace between name and colon (RFC 9112 section 5.1):
		// "Transfer-Encoding : chunked" is ignored by some servers and
		// honoured by others, the classic smuggling desync. MUST reject.
		return field{}, invalid("whitespace before colon in header " + quoteName(name))
	}
	if !isToken(name) {
		// A name with invalid characters (e.g. "Content-Length\x00")
		// may be normalised differently by the next hop: refuse.
		return field{}, invalid("invalid character in header name " + quoteName(name))
	}
	value := trimOWS(line[colon+1:])
	if !validValue(value) {
		return field{}, invalid("control character (bare CR, LF or NUL) in header " + name)
	}
	return field{name: name, value: value}, nil
}

// quoteName renders a possibly invalid header name safely for a reason
// phrase, which ends up in a response header.
func quoteName(name string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(name) && i < 64; i++ {
		c := name[i]
		if c < 0x20 || c >= 0x7f || c == '"' {
			b.WriteByte('?')
			continue
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// parseRequest parses and validates the request head in s (as read by
// readHead) into h.
func parseRequest(s string, h *RequestHead) error {
	h.reset()
	h.raw = s
	line, rest, err := nextLine(s)
	if err != nil {
		return err
	}
	if err := parseRequestLine(line, h); err != nil {
		return err
	}
	if h.fields, err = parseFields(rest, h.fields); err != nil {
		return err
	}
	return requestSemantics(h)
}

func parseRequestLine(line string, h *RequestHead) error {
	sp1 := strings.IndexByte(line, ' ')
	if sp1 < 0 {
		return invalid("malformed request line")
	}
	h.method = line[:sp1]
	if !isToken(h.method) {
		return invalid("invalid method")
	}
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 < 0 {
		return invalid("malformed request line (HTTP/0.9 is not supported)")
	}
	h.target = rest[:sp2]
	proto := rest[sp2+1:]
	switch proto {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return &headError{status: http.StatusHTTPVersionNotSupported, msg: "HTTP version " + proto + " is not supported"}
		}
		return invalid("malformed HTTP version in request line")
	}
	h.proto = proto
	if h.target == "" {
		return invalid("empty request target")
	}
	for i := 0; i < len(h.target); i++ {
		// Only visible ASCII: spaces, controls (bare CR) and raw
		// non-ASCII bytes in a target are parsed differently by
		// different servers. A fragment is never sent.
		if c := h.target[i]; c <= 0x20 || c >= 0x7f || c == '#' {
			return invalid("invalid character in request target")
		}
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// requestSemantics applies the field-level rules of RFC 9110/9112 that a
// proxy must enforce before forwarding.
func requestSemantics(h *RequestHead) error {
	hosts, clSeen := 0, false
	var te string
	teCount := 0
	for _, f := range h.fields {
		switch {
		case equalFold(f.name, "Host"):
			hosts++
			h.host = f.value
		case equalFold(f.name, "Content-Length"):
			n, err := parseContentLength(f.value)
			if err != nil {
				return err
			}
			if clSeen && n != h.contentLength {
				// Two lengths: each hop may pick a different one
				// (request smuggling). Identical repeats are allowed
				// by RFC 9110 section 8.6 and forwarded as one.
				return invalid("multiple differing Content-Length headers (request smuggling)")
			}
			clSeen, h.contentLength = true, n
		case equalFold(f.name, "Transfer-Encoding"):
			teCount++
			te = f.value
		case equalFold(f.name, "Connection"):
			if err := parseConnection(f.value, &h.connTokens); err != nil {
				return err
			}
		case equalFold(f.name, "TE"):
			h.teTrailers = h.teTrailers || listContains(f.value, "trailers")
		case equalFold(f.name, "Expect"):
			h.expectContinue = h.minor == 1 && equalFold(f.value, "100-continue")
		}
	}
	if hosts > 1 {
		// Two Host headers: the router and the app may each pick a
		// different one (host confusion, cache poisoning).
		return invalid("multiple Host headers")
	}
	h.hasHost = hosts == 1
	if h.minor == 1 && !h.hasHost {
		return invalid("HTTP/1.1 request without a Host header")
	}
	if h.hasHost && !validAuthority(h.host, true) {
		return invalid("invalid Host header")
	}
	if err := parseTarget(h); err != nil {
		return err
	}

	if teCount > 0 {
		if clSeen {
			// Content-Length and Transfer-Encoding together: the
			// classic CL.TE / TE.CL request smuggling. RFC 9112
			// section 6.1 allows rejecting; we always do.
			return invalid("both Content-Length and Transfer-Encoding (request smuggling)")
		}
		if h.minor == 0 {
			// An HTTP/1.0 hop does not understand chunked: a body the
			// next hop frames differently (request smuggling).
			return invalid("Transfer-Encoding in an HTTP/1.0 request")
		}
		if teCount > 1 || !equalFold(te, "chunked") {
			// Anything but exactly "chunked" ("chunked, identity",
			// "xchunked", a second TE line) is an obfuscation that
			// makes hops disagree on the body length (request
			// smuggling).
			return invalid("Transfer-Encoding other than exactly \"chunked\"")
		}
		h.body = bodyChunked
	} else if clSeen && h.contentLength > 0 {
		h.body = bodyLength
	}
	if h.method == "CONNECT" && h.body != bodyNone {
		return invalid("CONNECT request with a body")
	}

	switch {
	case h.minor == 1:
		h.keepAlive = !hasToken(h.connTokens, "close")
	default:
		h.keepAlive = hasToken(h.connTokens, "keep-alive") && !hasToken(h.connTokens, "close")
	}
	if h.minor == 1 && hasToken(h.connTokens, "upgrade") {
		h.upgrade = filterUpgrade(h.fields.get("Upgrade"))
	}
	return nil
}

// parseContentLength parses a Content-Length value: digits only (no sign,
// no spaces, no hex), at most 18 of them so it cannot overflow int64. A
// list "5, 5" of identical values is accepted as 5 (RFC 9110 section 8.6).
func parseContentLength(v string) (int64, error) {
	var n int64 = -1
	for v != "" || n < 0 {
		var t string
		t, v = nextToken(v)
		if t == "" || len(t) > 18 {
			return 0, invalid("invalid Content-Length")
		}
		var m int64
		for i := 0; i < len(t); i++ {
			if !isDigit(t[i]) {
				return 0, invalid("invalid Content-Length")
			}
			m = m*10 + int64(t[i]-'0')
		}
		if n >= 0 && m != n {
			return 0, invalid("multiple differing Content-Length values (request smuggling)")
		}
		n = m
	}
	return n, nil
}

// parseConnection records the tokens of a Connection field.
func parseConnection(v string, tokens *[]string) error {
	for v != "" {
		var t string
		t, v = nextToken(v)
		if t == "" {
			continue
		}
		if !isToken(t) {
			return invalid("invalid Connection header")
		}
		if len(*tokens) >= 32 {
			return invalid("too many Connection options")
		}
		*tokens = append(*tokens, t)
	}
	return nil
}

func hasToken(tokens []string, t string) bool {
	for _, x := range tokens {
		if equalFold(x, t) {
			return true
		}
	}
	return false
}

// filterUpgrade returns the Upgrade value to forward: h2c is removed
// (HTTP/2 cleartext upgrade is refused by stripping it: the pooled upstream
// hop speaks HTTP/1.1), everything else is kept. "" means no upgrade.
func filterUpgrade(v string) string {
	if v == "" {
		return ""
	}
	if !listContains(v, "h2c") {
		return v
	}
	var b strings.Builder
	for v != "" {
		var t string
		t, v = nextToken(v)
		if t == "" || equalFold(t, "h2c") {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t)
	}
	return b.String()
}

// parseTarget checks the request-target form (RFC 9112 section 3.2) and
// fills path and host.
func parseTarget(h *RequestHead) error {
	t := h.target
	switch {
	case h.method == "CONNECT":
		// authority-form, only for CONNECT.
		if !validAuthority(t, false) || strings.IndexByte(t, ':') < 0 {
			return invalid("CONNECT target must be host:port")
		}
		h.host, h.path = t, ""
	case t == "*":
		// asterisk-form, only for OPTIONS.
		if h.method != "OPTIONS" {
			return invalid("asterisk-form target is only allowed with OPTIONS")
		}
		h.path = "*"
	case t[0] == '/':
		h.path = t
		if q := strings.IndexByte(t, '?'); q >= 0 {
			h.path = t[:q]
		}
	case hasPrefixFold(t, "http://") || hasPrefixFold(t, "https://"):
		rest := t[strings.IndexByte(t, ':')+3:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		authority := rest[:end]
		if authority == "" || !validAuthority(authority, false) {
			return invalid("invalid authority in absolute-form target")
		}
		// The authority of an absolute-form target wins over Host
		// (RFC 9112 section 3.2.2).
		h.host = authority
		p := rest[end:]
		if q := strings.IndexByte(p, '?'); q >= 0 {
			p = p[:q]
		}
		if p == "" {
			p = "/"
		}
		h.path = p
	default:
		return invalid("request target must be a path or an absolute URI")
	}
	return nil
}

// validAuthority checks host[:port] characters. userinfo ("user@host") is
// refused: "http://trusted@evil" confuses routing and logs. emptyOK allows
// the empty Host an HTTP/1.0-origin request may carry.
func validAuthority(a string, emptyOK bool) bool {
	if a == "" {
		return emptyOK
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		case strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseResponse parses and validates the response head in s into h.
func parseResponse(s string, h *ResponseHead) error {
	h.reset()
	h.raw = s
	line, rest, err := nextLine(s)
	if err != nil {
		return err
	}
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' {
		return invalid("malformed status line")
	}
	switch line[7] {
	case '1':
		h.minor = 1
	case '0':
		h.minor = 0
	default:
		return invalid("unsupported HTTP version in status line")
	}
	h.proto = line[:8]
	code := line[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] < '1' || code[0] > '5' {
		return invalid("invalid status code")
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if len(line) > 12 {
		if line[12] != ' ' {
			return invalid("invalid status code")
		}
		h.reason = line[13:]
		if !validValue(h.reason) {
			return invalid("control character in reason phrase")
		}
	}
	if h.fields, err = parseFields(rest, h.fields); err != nil {
		return err
	}
	return responseSemantics(h)
}

func responseSemantics(h *ResponseHead) error {
	var lastTE string
	for _, f := range h.fields {
		switch {
		case equalFold(f.name, "Content-Length"):
			n, err := parseContentLength(f.value)
			if err != nil {
				return err
			}
			if h.hasLength && n != h.contentLength {
				// Response desync: each hop would cut the body at a
				// different place and poison the pooled connection.
				return invalid("multiple differing Content-Length headers")
			}
			h.hasLength, h.contentLength = true, n
		case equalFold(f.name, "Transfer-Encoding"):
			h.hasTE = true
			lastTE = f.value
		case equalFold(f.name, "Connection"):
			if err := parseConnection(f.value, &h.connTokens); err != nil {
				return err
			}
		}
	}
	if h.hasTE {
		if h.hasLength {
			// Both framings: the response equivalent of CL.TE
			// smuggling; a lenient hop would desync the pooled
			// upstream connection.
			return invalid("both Content-Length and Transfer-Encoding")
		}
		// The final coding decides (RFC 9112 section 6.3): chunked, or
		// the body runs until the connection closes.
		final := lastTE
		if i := strings.LastIndexByte(final, ','); i >= 0 {
			final = final[i+1:]
		}
		h.chunked = equalFold(trimOWS(final), "chunked")
	}
	if h.minor == 1 {
		h.close = hasToken(h.connTokens, "close")
	} else {
		h.close = !hasToken(h.connTokens, "keep-alive") || hasToken(h.connTokens, "close")
	}
	return nil
}

// errIsHead reports whether err is a refusal of a head or a body (as
// opposed to an I/O failure). Refusals are never wrapped.
func errIsHead(err error) (*headError, bool) {
	he, ok := err.(*headError)
	return he, ok
}
