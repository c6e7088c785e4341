// Package route holds the HTTP and gRPC routes of the mesh (Gateway API
// HTTPRoute and GRPCRoute with a Service as parent, the GAMMA model) as the
// control plane understands them, free of the Kubernetes types: every
// configuration source converts its documents to a Route, the memory store
// checks references, and the push server compiles the routes of a service
// into its destination snapshot (see Compile for the precedence order).
//
// Any control-plane or configuration package may import route; the proxy
// does not. Values are plain data; a Route stored in a snapshot must not be
// modified. Functions are safe for concurrent use.
package route

import "time"

// Kinds of route documents.
const (
	KindHTTP = "HTTPRoute"
	KindGRPC = "GRPCRoute"
)

// Route is one HTTPRoute or GRPCRoute. Services named in it live in the
// route's namespace unless a reference names another.
type Route struct {
	// Kind is KindHTTP or KindGRPC.
	Kind string
	// Parents are the services whose traffic the route governs.
	Parents []Ref
	Rules   []Rule
}

// Ref names a service, and optionally one of its ports (0: any).
type Ref struct {
	// Namespace; "" means the route's.
	Namespace string
	Name      string
	Port      int32
	// Field is where the reference was written ("spec.parentRefs[0]"),
	// for errors.
	Field string
}

// Rule is one rule of a route.
type Rule struct {
	// Matches are ORed; none matches every request.
	Matches []Match
	// Backends are weighted; none means the parent service's own
	// backends (itself, or its TrafficSplit).
	Backends []Backend
	Filters  []Filter
	// RequestTimeout bounds the whole request; 0 = none.
	RequestTimeout time.Duration
	// BackendTimeout bounds each try; 0 = none.
	BackendTimeout time.Duration
	// Retry is the Gateway API retry stanza, if any.
	Retry *Retry
	// Field is the rule's place in the document ("spec.rules[1]").
	Field string
}

// Retry is the Gateway API HTTPRouteRetry.
type Retry struct {
	Codes    []int
	Attempts int
	Backoff  time.Duration
}

// Backend is a weighted backend service.
type Backend struct {
	Ref
	Weight uint32
}

// PathType is how a path match compares.
type PathType int

// Path match types.
const (
	PathPrefix PathType = iota
	PathExact
	PathRegex
)

// Match is one match of a rule: every set condition must hold.
type Match struct {
	// Path; a nil Path matches every path (as prefix "/").
	Path    *PathMatch
	Headers []ValueMatch
	Query   []ValueMatch
	// Method, e.g. "GET"; "" matches any.
	Method string
}

// PathMatch compares the request path.
type PathMatch struct {
	Type  PathType
	Value string
}

// ValueMatch compares a header or query parameter; Regex is RE2 matched
// against the whole value.
type ValueMatch struct {
	Name  string
	Value string
	Regex bool
}

// Filter is one filter of a rule; exactly one field is set.
type Filter struct {
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Mirror          *Mirror
	Rewrite         *Rewrite
	Redirect        *Redirect
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// Header is one header field.
type Header struct {
	Name  string
	Value string
}

// Mirror copies requests to a backend; its answers are discarded.
type Mirror struct {
	Backend Ref
	// Percent of requests mirrored, 0 < Percent <= 100.
	Percent float64
}

// Rewrite changes the request before it is forwarded. At most one of
// FullPath and PrefixMatch is set.
type Rewrite struct {
	// Hostname replaces the Host (authority); "" keeps it.
	Hostname string
	// FullPath replaces the whole path.
	FullPath *string
	// PrefixMatch replaces the part of the path the rule's prefix match
	// matched.
	PrefixMatch *string
}

// Redirect answers the request with a redirect.
type Redirect struct {
	Scheme   string
	Hostname string
	Port     int32
	Rewrite
	// StatusCode is 301 or 302.
	StatusCode int
}
