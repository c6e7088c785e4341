package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"weft.dev/weft/examples/demo/internal/bookapi"
	"weft.dev/weft/examples/demo/internal/propagate"
)

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

// frontend serves the demo's HTML page, built from two calls to the API.
// It is safe for concurrent use.
type frontend struct {
	api      *url.URL
	client   *http.Client
	timeout  time.Duration
	servedBy string
	log      *slog.Logger
	mux      *http.ServeMux
}

// newFrontend returns the handler of the web program. client is used for
// every call to the API, each bounded by timeout. It does no I/O.
func newFrontend(api *url.URL, client *http.Client, timeout time.Duration, servedBy string, log *slog.Logger) *frontend {
	f := &frontend{api: api, client: client, timeout: timeout, servedBy: servedBy, log: log, mux: http.NewServeMux()}
	f.mux.HandleFunc("GET /{$}", f.index)
	f.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	f.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("no page %s %s: the demo serves GET / and GET /healthz", r.Method, r.URL.Path), http.StatusNotFound)
	})
	return f
}

func (f *frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mux.ServeHTTP(w, r)
}

// pageData is what page.html shows.
type pageData struct {
	Books        []bookapi.Book
	BooksVersion string
	BooksError   string
	Ratings      bool
	Quote        *bookapi.Quote
	QuoteVersion string
	QuoteError   string
	ServedBy     string
	API          string
}

// index renders the page. A failed book list makes the page a 502, since
// that is the page's content; a failed quote only degrades it.
func (f *frontend) index(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
	defer cancel()
	d := pageData{ServedBy: f.servedBy, API: f.api.String()}
	var books bookapi.BooksResponse
	var quote bookapi.QuoteResponse
	var booksErr, quoteErr error
	var wg sync.WaitGroup
	wg.Go(func() { booksErr = f.get(ctx, r.Header, "/api/books", nil, &books) })
	wg.Go(func() {
		quoteErr = f.get(ctx, r.Header, "/api/quote", url.Values{"topic": {r.URL.Query().Get("topic")}}, &quote)
	})
	wg.Wait()

	status := http.StatusOK
	if booksErr != nil {
		f.log.Warn("book list", "err", booksErr)
		d.BooksError = booksErr.Error()
		status = http.StatusBadGateway
	} else {
		d.Books, d.BooksVersion = books.Books, books.Version
		for _, b := range books.Books {
			d.Ratings = d.Ratings || b.Rating > 0
		}
	}
	if quoteErr != nil {
		f.log.Warn("quote", "err", quoteErr)
		d.QuoteError = quoteErr.Error()
	} else {
		d.Quote, d.QuoteVersion = &quote.Quote, quote.Version
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, d); err != nil {
		f.log.Error("render page", "err", err)
		http.Error(w, "cannot render the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// maxAPIBody bounds what the front end reads from one API answer.
const maxAPIBody = 1 << 20

// get fetches path from the API into v, forwarding the tracing headers of
// the incoming request.
func (f *frontend) get(ctx context.Context, in http.Header, path string, q url.Values, v any) error {
	u := f.api.JoinPath(path)
	if q.Get("topic") != "" {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	propagate.HTTP(req.Header, in)
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e bookapi.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("GET %s: %s: %s", u, resp.Status, e.Error)
		}
		if b := bytes.TrimSpace(body); len(b) > 200 {
			body = append(b[:200:200], "…"...)
		}
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode JSON: %w", u, err)
	}
	return nil
}
