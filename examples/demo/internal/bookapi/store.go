package bookapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Book is one book of the catalogue.
type Book struct {
	ID     int    `json:"id"`
	Title  string `json:"title"`
	Author string `json:"author"`
	Year   int    `json:"year,omitempty"`
	// Rating, from 0 to 5, is shown by version v2 of the API only.
	Rating float64 `json:"rating,omitempty"`
}

// NewBook is the body of POST /api/books.
type NewBook struct {
	Title  string  `json:"title"`
	Author string  `json:"author"`
	Year   int     `json:"year,omitempty"`
	Rating float64 `json:"rating,omitempty"`
}

// Limits on what a client may add.
const (
	maxText = 200
	// MaxAdded is how many added books the store keeps; adding one more
	// forgets the oldest added book, so a load generator cannot grow the
	// store without bound. The seed books are never forgotten.
	MaxAdded = 100
)

// Validate reports every problem with b, naming the field.
func (b NewBook) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"title", b.Title}, {"author", b.Author}} {
		switch {
		case strings.TrimSpace(f.v) == "":
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		case utf8.RuneCountInString(f.v) > maxText:
			errs = append(errs, fmt.Errorf("%s is longer than %d characters", f.name, maxText))
		}
	}
	if b.Year < 0 || b.Year > 3000 {
		errs = append(errs, fmt.Errorf("year %d is out of range: give a year from 0 to 3000, or omit it", b.Year))
	}
	if b.Rating < 0 || b.Rating > 5 {
		errs = append(errs, fmt.Errorf("rating %v is out of range: give 0 to 5, or omit it", b.Rating))
	}
	return errors.Join(errs...)
}

// seed is the catalogue every store starts with.
var seed = []Book{
	{Title: "Designing Data-Intensive Applications", Author: "Martin Kleppmann", Year: 2017, Rating: 4.8},
	{Title: "Site Reliability Engineering", Author: "Betsy Beyer et al.", Year: 2016, Rating: 4.4},
	{Title: "The Go Programming Language", Author: "Alan Donovan, Brian Kernighan", Year: 2015, Rating: 4.7},
	{Title: "Building Microservices", Author: "Sam Newman", Year: 2021, Rating: 4.3},
	{Title: "Release It!", Author: "Michael T. Nygard", Year: 2018, Rating: 4.6},
	{Title: "Kubernetes Patterns", Author: "Bilgin Ibryam, Roland Huß", Year: 2023, Rating: 4.2},
}

// store is the in-memory catalogue. It is safe for concurrent use.
type store struct {
	mu sync.Mutex // guards the fields below
	// books holds the seed books, then the added ones, in ID order.
	books  []Book
	nextID int
}

func newStore() *store {
	s := &store{nextID: 1}
	for _, b := range seed {
		b.ID = s.nextID
		s.nextID++
		s.books = append(s.books, b)
	}
	return s
}

func (s *store) list() []Book {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.books)
}

func (s *store) get(id int) (Book, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := slices.BinarySearchFunc(s.books, id, func(b Book, id int) int { return b.ID - id })
	if !ok {
		return Book{}, false
	}
	return s.books[i], true
}

func (s *store) add(nb NewBook) Book {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := Book{ID: s.nextID, Title: strings.TrimSpace(nb.Title), Author: strings.TrimSpace(nb.Author), Year: nb.Year, Rating: nb.Rating}
	s.nextID++
	if len(s.books)-len(seed) >= MaxAdded {
		s.books = slices.Delete(s.books, len(seed), len(seed)+1)
	}
	s.books = append(s.books, b)
	return b
}
