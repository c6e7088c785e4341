package file

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
)

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// checkShape walks a decoded JSON value (objects as map[string]any, numbers
// as json.Number) against the Go type t the value will be decoded into and
// returns one error per unknown field or mistyped value, each naming the
// field by its path ("spec.backends[1].weight"). Field names must match the
// json tags exactly: encoding/json's case-insensitive matching would accept
// "Service" for "service" silently. A json.RawMessage accepts anything; its
// owner validates it.
func checkShape(v any, t reflect.Type, path string) []error {
	if v == nil {
		return nil // null is the same as absent
	}
	if t == rawMessageType {
		return nil
	}
	at := func(format string, args ...any) []error {
		return []error{fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkShape(v, t.Elem(), path)
	case reflect.Interface:
		return nil
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return at("must be a mapping of fields, not %s", describe(v))
		}
		fields := jsonFields(t)
		var errs []error
		for _, k := range slices.Sorted(mapKeys(obj)) {
			sub := join(path, k)
			f, ok := fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("unknown field %q%s", sub, suggest(k, fields)))
				continue
			}
			errs = append(errs, checkShape(obj[k], f, sub)...)
		}
		return errs
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return at("must be a list, not %s", describe(v))
		}
		var errs []error
		for i, e := range arr {
			errs = append(errs, checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return at("must be a mapping, not %s", describe(v))
		}
		var errs []error
		for _, k := range slices.Sorted(mapKeys(obj)) {
			errs = append(errs, checkShape(obj[k], t.Elem(), join(path, k))...)
		}
		return errs
	case reflect.String:
		if _, ok := v.(string); !ok {
			return at("must be a string, not %s (quote it)", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return at("must be true or false, not %s", describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return at("must be an integer, not %s", describe(v))
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i < -(1<<(t.Bits()-1)) || i > 1<<(t.Bits()-1)-1 {
			return at("must be an integer between %d and %d, not %s", -(1 << (t.Bits() - 1)), 1<<(t.Bits()-1)-1, n)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return at("must be an integer, not %s", describe(v))
		}
		if f, err := n.Float64(); err == nil && f < 0 {
			return at("must not be negative")
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || u > math.MaxUint64>>(64-t.Bits()) {
			return at("must be an integer between 0 and %d, not %s", uint64(math.MaxUint64>>(64-t.Bits())), n)
		}
	}
	return nil
}

// jsonFields maps the json names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		tag, tagged := f.Tag.Lookup("json")
		if n, _, _ := cutComma(tag); f.Anonymous && n == "" && f.Type.Kind() == reflect.Struct {
			// An embedded struct without a name is flattened, as
			// encoding/json does (Kubernetes' `json:",inline"`).
			maps.Copy(fields, jsonFields(f.Type))
			continue
		}
		if tag, ok := tag, tagged; ok {
			if n, _, _ := cutComma(tag); n == "-" {
				continue
			} else if n != "" {
				name = n
			}
		}
		fields[name] = f.Type
	}
	return fields
}

func cutComma(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names a known field spelled like k, differing only in case or by
// one character, to help with typos.
func suggest(k string, fields map[string]reflect.Type) string {
	var names []string
	for name := range fields {
		if closeSpelling(k, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return fmt.Sprintf(" (did you mean %q?)", names[0])
}

func closeSpelling(a, b string) bool {
	if a == b {
		return false
	}
	la, lb := []rune(a), []rune(b)
	if d := len(la) - len(lb); d > 1 || d < -1 {
		return false
	}
	// Levenshtein distance <= 1, ignoring case.
	lower := func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	i, j, edits := 0, 0, 0
	for i < len(la) && j < len(lb) {
		if lower(la[i]) == lower(lb[j]) {
			i, j = i+1, j+1
			continue
		}
		edits++
		if edits > 1 {
			return false
		}
		switch {
		case len(la) > len(lb):
			i++
		case len(la) < len(lb):
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return edits+(len(la)-i)+(len(lb)-j) <= 1
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + string(x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%v", v)
}
