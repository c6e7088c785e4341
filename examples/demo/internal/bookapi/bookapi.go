// Package bookapi implements the demo's HTTP/JSON API: an in-memory book
// catalogue (GET and POST /api/books, GET /api/books/{id}) and a quote of the
// day fetched from the gRPC quotes service (GET /api/quote, and GET
// /api/quotes, which reads the service's server stream). Every JSON
// answer carries the API's "version" so that a canary split is visible to
// clients; version v2 also shows each book's "rating".
//
// The api program serves it, and tests of the web front end run it; only
// code under examples/demo may import it. An API is safe for concurrent use.
package bookapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"weft.dev/weft/examples/demo/internal/propagate"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

// Versions of the API. V2 adds each book's rating.
const (
	V1 = "v1"
	V2 = "v2"
)

// Config configures an API.
type Config struct {
	// Version is V1 or V2 (the default, "", means V1).
	Version string
	// Quotes is the client of the quotes service; nil makes GET /api/quote
	// answer 503.
	Quotes quotespb.QuotesClient
	// QuoteTimeout bounds each call to the quotes service (default 2s).
	QuoteTimeout time.Duration
	// Log receives one debug record per request and a warning per failed
	// call to the quotes service (default: discard).
	Log *slog.Logger
}

// API is the HTTP handler of the demo API.
type API struct {
	cfg   Config
	store *store
	mux   *http.ServeMux
}

// New returns an API with the seed catalogue. It does no I/O.
func New(cfg Config) (*API, error) {
	switch cfg.Version {
	case "":
		cfg.Version = V1
	case V1, V2:
	default:
		return nil, fmt.Errorf("unknown API version %q: choose v1 or v2", cfg.Version)
	}
	if cfg.QuoteTimeout <= 0 {
		cfg.QuoteTimeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, store: newStore(), mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /api/books", a.listBooks)
	a.mux.HandleFunc("POST /api/books", a.addBook)
	a.mux.HandleFunc("GET /api/books/{id}", a.getBook)
	a.mux.HandleFunc("GET /api/quote", a.quote)
	a.mux.HandleFunc("GET /api/quotes", a.quotes)
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s: try GET /api/books, GET /api/books/{id}, POST /api/books, GET /api/quote or GET /api/quotes?count=3", r.Method, r.URL.Path))
	})
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	a.mux.ServeHTTP(rec, r)
	a.cfg.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Responses. Every one carries the version.
type (
	// BooksResponse answers GET /api/books.
	BooksResponse struct {
		Version string `json:"version"`
		Books   []Book `json:"books"`
	}
	// BookResponse answers GET /api/books/{id} and POST /api/books.
	BookResponse struct {
		Version string `json:"version"`
		Book    Book   `json:"book"`
	}
	// Quote is a quotation and its author.
	Quote struct {
		Text   string `json:"text"`
		Author string `json:"author"`
	}
	// QuoteResponse answers GET /api/quote.
	QuoteResponse struct {
		Version string `json:"version"`
		Quote   Quote  `json:"quote"`
	}
	// QuotesResponse answers GET /api/quotes.
	QuotesResponse struct {
		Version string  `json:"version"`
		Quotes  []Quote `json:"quotes"`
	}
	// ErrorResponse answers any request that fails.
	ErrorResponse struct {
		Version string `json:"version"`
		Error   string `json:"error"`
	}
	// HealthResponse answers GET /healthz.
	HealthResponse struct {
		Status  string `json:"status"`
		Version string `json:"version"`
	}
)

func (a *API) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Demo-Api-Version", a.cfg.Version)
	w.WriteHeader(status)
	// An error here means the client went away; there is no one to tell.
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) fail(w http.ResponseWriter, status int, msg string) {
	a.reply(w, status, ErrorResponse{Version: a.cfg.Version, Error: msg})
}

// view returns b as this version shows it.
func (a *API) view(b Book) Book {
	if a.cfg.Version == V1 {
		b.Rating = 0
	}
	return b
}

func (a *API) listBooks(w http.ResponseWriter, r *http.Request) {
	books := a.store.list()
	for i := range books {
		books[i] = a.view(books[i])
	}
	a.reply(w, http.StatusOK, BooksResponse{Version: a.cfg.Version, Books: books})
}

func (a *API) getBook(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		a.fail(w, http.StatusBadRequest, fmt.Sprintf("book id %q is not a positive integer", r.PathValue("id")))
		return
	}
	b, ok := a.store.get(id)
	if !ok {
		a.fail(w, http.StatusNotFound, fmt.Sprintf("no book with id %d: GET /api/books lists them", id))
		return
	}
	a.reply(w, http.StatusOK, BookResponse{Version: a.cfg.Version, Book: a.view(b)})
}

// maxBody bounds the body of POST /api/books.
const maxBody = 64 << 10

func (a *API) addBook(w http.ResponseWriter, r *http.Request) {
	var nb NewBook
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&nb); err != nil {
		a.fail(w, http.StatusBadRequest, fmt.Sprintf(`invalid JSON body: %v; send {"title": "...", "author": "...", "year": 2024}`, err))
		return
	}
	if dec.More() {
		a.fail(w, http.StatusBadRequest, "invalid JSON body: more than one JSON value; send a single book object")
		return
	}
	if err := nb.Validate(); err != nil {
		a.fail(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid book: %v", err))
		return
	}
	b := a.store.add(nb)
	w.Header().Set("Location", "/api/books/"+strconv.Itoa(b.ID))
	a.reply(w, http.StatusCreated, BookResponse{Version: a.cfg.Version, Book: a.view(b)})
}

func (a *API) quote(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Quotes == nil {
		a.fail(w, http.StatusServiceUnavailable, "no quotes backend configured: start the API with --quotes ADDR or set WEFT_QUOTES_ADDR")
		return
	}
	ctx, cancel := context.WithTimeout(propagate.GRPC(r.Context(), r.Header), a.cfg.QuoteTimeout)
	defer cancel()
	q, err := a.cfg.Quotes.GetQuote(ctx, &quotespb.GetQuoteRequest{Topic: r.URL.Query().Get("topic")})
	if err != nil {
		code, msg := quoteError(err)
		if code >= 500 {
			a.cfg.Log.Warn("quotes backend call", "err", err)
		}
		a.fail(w, code, msg)
		return
	}
	a.reply(w, http.StatusOK, QuoteResponse{Version: a.cfg.Version, Quote: Quote{Text: q.GetText(), Author: q.GetAuthor()}})
}

// maxQuotes is the largest count GET /api/quotes accepts, as the quotes
// service does.
const maxQuotes = 100

// quotes streams ?count= quotes (default 3) from the quotes service.
func (a *API) quotes(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Quotes == nil {
		a.fail(w, http.StatusServiceUnavailable, "no quotes backend configured: start the API with --quotes ADDR or set WEFT_QUOTES_ADDR")
		return
	}
	count := 3
	if c := r.URL.Query().Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > maxQuotes {
			a.fail(w, http.StatusBadRequest, fmt.Sprintf("count %q is not a number from 1 to %d", c, maxQuotes))
			return
		}
		count = n
	}
	ctx, cancel := context.WithTimeout(propagate.GRPC(r.Context(), r.Header), a.cfg.QuoteTimeout)
	defer cancel()
	stream, err := a.cfg.Quotes.StreamQuotes(ctx, &quotespb.StreamQuotesRequest{Count: uint32(count)})
	var qs []Quote
	for err == nil {
		var q *quotespb.Quote
		if q, err = stream.Recv(); err == nil {
			qs = append(qs, Quote{Text: q.GetText(), Author: q.GetAuthor()})
		}
	}
	if !errors.Is(err, io.EOF) {
		code, msg := quoteError(err)
		if code >= 500 {
			a.cfg.Log.Warn("quotes backend stream", "err", err)
		}
		a.fail(w, code, msg)
		return
	}
	a.reply(w, http.StatusOK, QuotesResponse{Version: a.cfg.Version, Quotes: qs})
}

// quoteError maps an error of the quotes service to an HTTP status and a
// message for the client.
func quoteError(err error) (int, string) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.NotFound:
		return http.StatusNotFound, st.Message()
	case codes.InvalidArgument:
		return http.StatusBadRequest, st.Message()
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout, "quotes backend did not answer in time: " + st.Message()
	case codes.Canceled:
		return http.StatusServiceUnavailable, "request canceled while calling the quotes backend"
	default:
		if errors.Is(err, context.DeadlineExceeded) {
			return http.StatusGatewayTimeout, "quotes backend did not answer in time"
		}
		return http.StatusBadGateway, fmt.Sprintf("quotes backend: %s: %s", st.Code(), st.Message())
	}
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	a.reply(w, http.StatusOK, HealthResponse{Status: "ok", Version: a.cfg.Version})
}
