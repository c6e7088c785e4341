// Package http1 is Weft's HTTP/1.1 hot path: a strict request and response
// parser and a forwarding server that relays each request from a client
// connection to a pooled upstream connection and streams the answer back.
//
// The design follows fasthttp rather than net/http: the upstream exchange
// runs synchronously on the goroutine that serves the client connection,
// readers, writers and copy buffers are pooled and reused, and a request on
// a warm keep-alive connection allocates almost nothing. Bodies are streamed
// with pooled buffers, never buffered whole; chunked bodies are re-framed.
//
// The parser is deliberately strict, because a proxy that is more lenient
// than the server behind it is the root of request smuggling: see the
// comments in parse.go for each rule and the attack it stops.
//
// Limits of the synchronous design: the request body is sent before the
// response is read, so an upstream that answers while it still reads a large
// body is served only once it stops reading (its early answer is then
// relayed); HTTP/1.1 full-duplex streaming is not supported. A client that
// stops reading a response stalls only its own exchange.
//
// Who may import it: the proxy's inbound and outbound listeners
// (internal/proxy/...), which implement Router and own Pools. The contract
// with them is in contract.go.
//
// Concurrency: a Server may serve many connections at once (ServeConn is
// safe to call concurrently); each call owns its connection. A Pool is safe
// for concurrent use. RequestHead and ResponseHead values belong to one
// exchange and must not be retained after it ends.
package http1
