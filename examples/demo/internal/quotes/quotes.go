// Package quotes implements the demo's gRPC quotes service
// (demo.quotes.v1.Quotes): a fixed catalogue of quotations by topic, served
// one at a time (GetQuote) or as a stream (StreamQuotes).
//
// The quotes program serves it, and tests of the programs that call it run
// it on loopback; only code under examples/demo may import it. A Server is
// safe for concurrent use.
package quotes

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"weft.dev/weft/examples/demo/quotes/quotespb"
)

// MaxStream is the largest count StreamQuotes accepts.
const MaxStream = 100

// DefaultStream is the number of quotes StreamQuotes sends for a count of 0.
const DefaultStream = 3

// catalogue maps a topic to its quotes. It is never written after init.
var catalogue = map[string][]*quotespb.Quote{
	"simplicity": {
		{Text: "Simplicity is prerequisite for reliability.", Author: "Edsger W. Dijkstra"},
		{Text: "Clear is better than clever.", Author: "Rob Pike"},
		{Text: "La perfection est atteinte non quand il ne reste rien à ajouter, mais quand il ne reste rien à enlever.", Author: "Antoine de Saint-Exupéry"},
	},
	"failure": {
		{Text: "Everything fails, all the time.", Author: "Werner Vogels"},
		{Text: "A distributed system is one in which the failure of a computer you didn't even know existed can render your own computer unusable.", Author: "Leslie Lamport"},
		{Text: "Hope is not a strategy.", Author: "Site Reliability Engineering"},
	},
	"code": {
		{Text: "Programs must be written for people to read, and only incidentally for machines to execute.", Author: "Harold Abelson"},
		{Text: "Premature optimization is the root of all evil.", Author: "Donald Knuth"},
		{Text: "Don't communicate by sharing memory; share memory by communicating.", Author: "Rob Pike"},
	},
}

// Topics returns the known topics, sorted.
func Topics() []string {
	ts := make([]string, 0, len(catalogue))
	for t := range catalogue {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// all holds every quote of every topic, in topic order.
var all = func() []*quotespb.Quote {
	var qs []*quotespb.Quote
	for _, t := range Topics() {
		qs = append(qs, catalogue[t]...)
	}
	return qs
}()

// Server implements quotespb.QuotesServer. The zero value is not usable;
// call NewServer.
type Server struct {
	quotespb.UnimplementedQuotesServer
}

// NewServer returns a Server over the built-in catalogue.
func NewServer() *Server { return &Server{} }

// pick returns a random quote of topic ("" for any topic).
func pick(topic string) (*quotespb.Quote, error) {
	qs := all
	if topic != "" {
		var ok bool
		if qs, ok = catalogue[strings.ToLower(topic)]; !ok {
			return nil, status.Errorf(codes.NotFound, "no topic %q: known topics are %s",
				topic, strings.Join(Topics(), ", "))
		}
	}
	q := qs[rand.IntN(len(qs))]
	return &quotespb.Quote{Text: q.GetText(), Author: q.GetAuthor()}, nil
}

// GetQuote returns a random quote of the requested topic.
func (s *Server) GetQuote(ctx context.Context, req *quotespb.GetQuoteRequest) (*quotespb.Quote, error) {
	return pick(req.GetTopic())
}

// StreamQuotes sends req.Count random quotes (DefaultStream for 0), then
// ends the stream. It stops early when the client goes away.
func (s *Server) StreamQuotes(req *quotespb.StreamQuotesRequest, stream grpc.ServerStreamingServer[quotespb.Quote]) error {
	n := req.GetCount()
	if n == 0 {
		n = DefaultStream
	}
	if n > MaxStream {
		return status.Errorf(codes.InvalidArgument, "count %d is too large: ask for at most %d quotes", n, MaxStream)
	}
	for range n {
		if err := stream.Context().Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		q, err := pick("")
		if err != nil {
			return err
		}
		if err := stream.Send(q); err != nil {
			return err
		}
	}
	return nil
}
