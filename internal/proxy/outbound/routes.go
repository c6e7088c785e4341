package outbound

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/balance"
	"weft.dev/weft/internal/proxy/h2"
	"weft.dev/weft/internal/proxy/http1"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/route"
	"weft.dev/weft/internal/proxy/transport"
	"weft.dev/weft/internal/proxy/upstream"
)

// routes is the compiled route table of one snapshot with a Picker per
// rule (nil: the destination's own backends) and per mirror.
type routes struct {
	table   *route.Table
	pickers []*balance.Picker
	mirrors []*balance.Picker
	// metrics of each rule's route, resolved once per snapshot.
	metrics []*metrics.Route
}

// toBalance converts a snapshot's backends; weight 0 when zeroWeight, for
// backends the destination's balancer must know without sending them its
// own traffic.
func toBalance(bs []*meshv1.Backend, zeroWeight bool) []balance.Backend {
	var out []balance.Backend
	for _, b := range bs {
		bb := balance.Backend{Service: b.GetService(), Weight: b.GetWeight()}
		if zeroWeight {
			bb.Weight = 0
		}
		for _, e := range b.GetEndpoints() {
			bb.Targets = append(bb.Targets, balance.Target{
				Address: e.GetAddress(), Weight: e.GetWeight(), Meshed: e.GetMeshed(), Identity: e.GetIdentity(),
			})
		}
		out = append(out, bb)
	}
	return out
}

// buildRoutes compiles the snapshot's route rules and returns backends
// extended by the rules' and mirrors' backends (with weight 0), so that
// their endpoints get upstreams and keep their balancing state.
func (s *Server) buildRoutes(snap *meshv1.DestinationSnapshot, backends []balance.Backend) (*routes, []balance.Backend) {
	if !snap.GetExists() || len(snap.GetRoutes()) == 0 {
		return nil, backends
	}
	t, err := route.Compile(snap.GetRoutes())
	if err != nil {
		s.log.Warn("route rules left out", "err", err)
	}
	rs := &routes{table: t, pickers: make([]*balance.Picker, len(t.Rules)), mirrors: make([]*balance.Picker, len(t.Rules)),
		metrics: make([]*metrics.Route, len(t.Rules))}
	service := snap.GetService()
	if service == "" {
		service = s.Service()
	}
	byName := map[string]*metrics.Route{}
	for _, r := range t.Rules {
		if byName[r.Name] == nil {
			byName[r.Name] = s.cfg.Metrics.Route(service, r.Name)
		}
		rs.metrics[r.Pos] = byName[r.Name]
		if len(r.Backends) > 0 {
			bb := toBalance(r.Backends, false)
			rs.pickers[r.Pos] = s.bal.Picker(bb)
			backends = append(backends, toBalance(r.Backends, true)...)
		}
		if r.Mirror != nil && r.Mirror.GetBackend() != nil {
			mb := []*meshv1.Backend{r.Mirror.GetBackend()}
			bb := toBalance(mb, false)
			bb[0].Weight = 1
			rs.mirrors[r.Pos] = s.bal.Picker(bb)
			backends = append(backends, toBalance(mb, true)...)
		}
	}
	return rs, backends
}

// picker is a P2C or a rule's Picker.
type picker interface {
	Pick() (*balance.Endpoint, error)
}

// matchHTTP1 returns the route rule an HTTP/1 request takes, or nil.
func (s *Server) matchHTTP1(req *http1.RequestHead) *route.Rule {
	st := s.state.Load()
	if st == nil || st.routes == nil {
		return nil
	}
	return st.routes.table.MatchHTTP1(req)
}

// matchHTTP2 returns the route rule an HTTP/2 request takes, or nil.
func (s *Server) matchHTTP2(req *http.Request) *route.Rule {
	st := s.state.Load()
	if st == nil || st.routes == nil {
		return nil
	}
	return st.routes.table.MatchHTTP(req)
}

// ruleMetrics returns the metrics of rule's route in st, nil if unknown.
func ruleMetrics(st *state, rule *route.Rule) *metrics.Route {
	if st == nil || st.routes == nil || rule.Pos >= len(st.routes.metrics) || st.routes.table.Rules[rule.Pos] != rule {
		return nil
	}
	return st.routes.metrics[rule.Pos]
}

// pickerOf returns the picker of the rule whose proto is rule in st (its
// own backends), else the destination's balancer; retries use it so that
// they stay on the rule's backends.
func (s *Server) pickerOf(st *state, rule *meshv1.RouteRule) picker {
	if rule != nil && st != nil && st.routes != nil {
		for _, r := range st.routes.table.Rules {
			if r.Proto == rule {
				return s.rulePicker(st, r)
			}
		}
	}
	return s.bal
}

// rulePicker returns the picker of rule in st: its own backends, else the
// destination's.
func (s *Server) rulePicker(st *state, rule *route.Rule) picker {
	if st.routes != nil && rule.Pos < len(st.routes.pickers) && st.routes.table.Rules[rule.Pos] == rule {
		if p := st.routes.pickers[rule.Pos]; p != nil {
			return p
		}
	}
	return s.bal
}

// routeRuleHTTP1 routes an HTTP/1 request that matched rule.
func (s *Server) routeRuleHTTP1(req *http1.RequestHead, rule *route.Rule) (http1.Route, error) {
	if rule.Redirect != nil {
		st := s.state.Load()
		st.metrics.Request()
		status := rule.RedirectStatus()
		loc := rule.RedirectLocation(req.Host(), req.Path(), rawQuery(req.Target()))
		st.metrics.Response(status, false, 0)
		ruleMetrics(st, rule).Response(false, 0)
		return http1.Route{Answer: &http1.Answer{Status: status, Header: []http1.HeaderField{{Name: "Location", Value: loc}}}}, nil
	}
	start := time.Now()
	st, u, err := s.pickWith(true, s.rulePicker(s.state.Load(), rule))
	if err == nil {
		err = s.admit(st, u, rule.Proto, req.Path())
	}
	if err != nil {
		s.countRefused(st, err)
		ruleMetrics(st, rule).Response(true, 0)
		return http1.Route{}, err
	}
	edit := rule.Edit
	if target, ok := rule.Target(req.Path(), rawQuery(req.Target())); ok {
		e := http1.Edit{}
		if edit != nil {
			e = *edit
		}
		e.Target = target
		edit = &e
	}
	var mirror func([]byte)
	if rule.Mirror != nil && req.Method() != "CONNECT" {
		mirror = s.mirrorHTTP1(st, rule, req, edit)
	}
	tmpl := http1.Route{Timeout: rule.RequestTimeout, TimeoutReason: rule.TimeoutReason, Edit: edit, MirrorBody: mirror}
	return s.routeHTTP1(st, u, rule.Proto, tmpl, completion{m: s.metricsOf(st, u), rm: ruleMetrics(st, rule), start: start}), nil
}

func rawQuery(target string) string {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[i+1:]
	}
	return ""
}

// routeRuleHTTP2 routes an HTTP/2 or gRPC request that matched rule.
// Request filters change req itself (h2 forwards a copy made after
// routing); response filters, redirects and the timeout wrap the
// transport.
func (s *Server) routeRuleHTTP2(req *http.Request, rule *route.Rule) (h2.Target, error) {
	if rule.Redirect != nil {
		st := s.state.Load()
		st.metrics.Request()
		status := rule.RedirectStatus()
		loc := rule.RedirectLocation(req.Host, req.URL.Path, req.URL.RawQuery)
		rm := ruleMetrics(st, rule)
		return h2.Target{Transport: redirectTransport{status: status, location: loc}, Addr: "redirect", Done: func(res h2.Result) {
			st.metrics.Response(res.Status, res.Failure(), 0)
			rm.Response(res.Failure(), 0)
		}}, nil
	}
	st, u, err := s.pickWith(true, s.rulePicker(s.state.Load(), rule))
	if err == nil {
		err = s.admit(st, u, rule.Proto, req.URL.Path)
	}
	if err != nil {
		s.countRefused(st, err)
		ruleMetrics(st, rule).Response(true, 0)
		return h2.Target{}, err
	}
	if h := rule.RequestHeaders; h != nil {
		editHeader(req.Header, h)
	}
	if rule.Host != "" {
		req.Host = rule.Host
	}
	if p, ok := rule.RewritePath(req.URL.Path); ok {
		u := *req.URL
		u.Path, u.RawPath = p, ""
		req.URL = &u
	}
	if rule.Mirror != nil {
		s.mirrorHTTP2(st, rule, req)
	}
	wrap := func(u *upstream.Upstream) http.RoundTripper {
		if rule.ResponseHeaders != nil || rule.RequestTimeout > 0 {
			return &ruleTransport{next: u.HTTP2(), rule: rule}
		}
		return u.HTTP2()
	}
	start := time.Now()
	m, rm := s.metricsOf(st, u), ruleMetrics(st, rule)
	return s.targetH2(st, u, rule.Proto, wrap, func(res h2.Result) {
		d := time.Since(start)
		m.Response(res.Status, res.Failure(), d)
		rm.Response(res.Failure(), d)
	}), nil
}

// editHeader applies a header modifier to h.
func editHeader(h http.Header, e *http1.HeaderEdit) {
	for _, f := range e.Set {
		h.Set(f.Name, f.Value)
	}
	for _, f := range e.Add {
		h.Add(f.Name, f.Value)
	}
	for _, name := range e.Remove {
		h.Del(name)
	}
}

// redirectTransport answers every request with a redirect.
type redirectTransport struct {
	status   int
	location string
}

func (t redirectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		StatusCode: t.status, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header:        http.Header{"Location": {t.location}, "Content-Length": {"0"}},
		Body:          http.NoBody,
		ContentLength: 0,
		Request:       req,
	}, nil
}

// ruleTransport applies a rule's response header modifier and request
// timeout around the endpoint's transport.
type ruleTransport struct {
	next http.RoundTripper
	rule *route.Rule
}

func (t *ruleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.rule.RequestTimeout <= 0 {
		resp, err := t.next.RoundTrip(req)
		if err == nil && t.rule.ResponseHeaders != nil {
			editHeader(resp.Header, t.rule.ResponseHeaders)
		}
		return resp, err
	}
	ctx, cancel := context.WithTimeoutCause(req.Context(), t.rule.RequestTimeout, errRequestTimeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if errors.Is(context.Cause(ctx), errRequestTimeout) {
			return nil, proxyerr.Wrap(http.StatusGatewayTimeout, err, "%s", t.rule.TimeoutReason)
		}
		return nil, err
	}
	if h := t.rule.ResponseHeaders; h != nil {
		editHeader(resp.Header, h)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

var errRequestTimeout = errors.New("route request timeout")

// cancelBody releases a request's timeout once its response body is done.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Mirroring: copies are sent on their own goroutines, at most
// mirrorConcurrency at a time; a copy that finds them all busy is dropped,
// so mirrors never hold up or slow the primary.
const (
	mirrorConcurrency = 32
	mirrorMaxBody     = 64 << 10
	mirrorTimeout     = 10 * time.Second
)

// mirrorer runs the mirror copies of a Server.
type mirrorer struct {
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// mirrors returns the Server's mirrorer, made on first use.
func (s *Server) mirrors() *mirrorer {
	s.mirrorOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.mirror = &mirrorer{sem: make(chan struct{}, mirrorConcurrency), ctx: ctx, cancel: cancel}
	})
	return s.mirror
}

// stopMirrors cancels the copies in flight and waits for them.
func (s *Server) stopMirrors() {
	m := s.mirrors()
	m.cancel()
	m.wg.Wait()
}

// goMirror runs send on its own goroutine unless too many run already,
// or the rule's percentage leaves this request out.
func (s *Server) goMirror(st *state, rule *route.Rule, send func(ctx context.Context, u *upstream.Upstream) error) {
	if p := rule.Mirror.GetPercent(); p > 0 && p < 100 && rand.Float64()*100 >= p {
		return
	}
	if st.routes == nil || rule.Pos >= len(st.routes.mirrors) || st.routes.mirrors[rule.Pos] == nil {
		return
	}
	pk := st.routes.mirrors[rule.Pos]
	m := s.mirrors()
	select {
	case m.sem <- struct{}{}:
	default:
		s.log.Debug("mirror copy dropped: too many in flight", "route", rule.Name)
		return
	}
	if m.ctx.Err() != nil {
		<-m.sem
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() { <-m.sem }()
		ep, err := pk.Pick()
		if err != nil {
			return
		}
		u := st.upstreams[ep.Address()]
		if u == nil || !u.Acquire() {
			return
		}
		defer u.Release()
		ctx, cancel := context.WithTimeout(m.ctx, mirrorTimeout)
		defer cancel()
		if err := send(ctx, u); err != nil {
			s.log.Debug("mirror copy failed", "route", rule.Name, "upstream", u.Addr(), "err", err)
		}
	}()
}

// mirrorHTTP1 returns the function http1 calls with the request's body
// (at most http1.MaxMirrorBody, read before forwarding) to send a copy of
// the request, its head as forwarded, to the rule's mirror; nil when the
// request cannot be mirrored. The copy is sent once, however many
// attempts the request takes.
func (s *Server) mirrorHTTP1(st *state, rule *route.Rule, req *http1.RequestHead, edit *http1.Edit) func([]byte) {
	target := req.Target()
	host := req.Host()
	if edit != nil {
		if edit.Target != "" {
			target = edit.Target
		}
		if edit.Host != "" {
			host = edit.Host
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	hdr := http.Header{}
	req.VisitHeaders(func(name, value string) {
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Content-Length":
			return
		}
		hdr.Add(name, value)
	})
	if edit != nil {
		editHeader(hdr, &edit.Request)
	}
	method := req.Method()
	var once sync.Once
	return func(b []byte) { once.Do(func() { s.sendMirrorHTTP1(st, rule, method, u, host, hdr, bytes.Clone(b)) }) }
}

// sendMirrorHTTP1 sends one HTTP/1 mirror copy.
func (s *Server) sendMirrorHTTP1(st *state, rule *route.Rule, method string, u *url.URL, host string, hdr http.Header, body []byte) {
	s.goMirror(st, rule, func(ctx context.Context, up *upstream.Upstream) error {
		out := (&http.Request{Method: method, URL: u, Host: host, Header: hdr, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Close: true,
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}).WithContext(ctx)
		if len(body) == 0 {
			out.Body = http.NoBody
		}
		c, err := up.Dial(ctx, transport.HTTP1)
		if err != nil {
			return err
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		if err := out.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), out)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return resp.Body.Close()
	})
}

// mirrorHTTP2 arranges for a copy of an HTTP/2 request to go to the
// rule's mirror once the primary has read the request body, when the body
// is at most mirrorMaxBody: the body is copied as the primary reads it
// (never read ahead, so streaming calls are not held up).
func (s *Server) mirrorHTTP2(st *state, rule *route.Rule, req *http.Request) {
	hdr := req.Header.Clone()
	method, host := req.Method, req.Host
	u := *req.URL
	send := func(body []byte) {
		s.goMirror(st, rule, func(ctx context.Context, up *upstream.Upstream) error {
			out, err := http.NewRequestWithContext(ctx, method, "http://"+up.Addr()+u.RequestURI(), bytes.NewReader(body))
			if err != nil {
				return err
			}
			out.Host, out.Header = host, hdr
			out.ContentLength = int64(len(body))
			resp, err := up.HTTP2().RoundTrip(out)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			return resp.Body.Close()
		})
	}
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		send(nil)
		return
	}
	if req.ContentLength > mirrorMaxBody {
		return
	}
	req.Body = &teeBody{ReadCloser: req.Body, done: send}
}

// teeBody keeps a copy of what the primary reads, up to mirrorMaxBody,
// and hands it to done at the end of the body.
type teeBody struct {
	io.ReadCloser
	buf      []byte
	overflow bool
	once     sync.Once
	done     func([]byte)
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if !b.overflow {
		if len(b.buf)+n > mirrorMaxBody {
			b.overflow, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	if err == io.EOF && !b.overflow {
		b.once.Do(func() { b.done(b.buf) })
	}
	return n, err
}
