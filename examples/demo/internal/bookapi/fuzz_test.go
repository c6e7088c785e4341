package bookapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAddBook sends arbitrary bodies to POST /api/books: the API never
// panics, answers 201, 400 or 422 with a JSON body naming its version, and
// stores only valid books.
func FuzzAddBook(f *testing.F) {
	for _, s := range []string{
		`{"title":"T","author":"A","year":2020,"rating":4.5}`,
		`{"title":"","author":"A"}`,
		`{"title":"T","author":"A"} {"x":1}`,
		`{"title":"T","author":"A","pages":1}`,
		`[1,2,3]`, `null`, ``, `{"year":1e400}`, "{\"title\":\"\xff\",\"author\":\"a\"}",
	} {
		f.Add(s)
	}
	a, err := New(Config{Version: V2})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/books", strings.NewReader(body)))
		switch rec.Code {
		case http.StatusCreated:
			var got BookResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("201 body %q: %v", rec.Body, err)
			}
			nb := NewBook{Title: got.Book.Title, Author: got.Book.Author, Year: got.Book.Year, Rating: got.Book.Rating}
			if err := nb.Validate(); err != nil {
				t.Errorf("stored an invalid book %+v from %q: %v", got.Book, body, err)
			}
		case http.StatusBadRequest, http.StatusUnprocessableEntity:
			var got ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error == "" || got.Version != V2 {
				t.Errorf("%d body %q: want an error naming version v2 (%v)", rec.Code, rec.Body, err)
			}
		default:
			t.Errorf("POST %q answered %d, want 201, 400 or 422", body, rec.Code)
		}
	})
}
