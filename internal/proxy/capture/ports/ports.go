// Package ports parses the port lists of weft-proxy's capture flags
// ("4191,9090-9092") into ranges and answers membership. It is shared by
// `weft-proxy init` (the ports the iptables rules skip) and the proxy
// (--opaque-ports).
//
// Any proxy package may import ports. A List is immutable and safe for
// concurrent use.
package ports

import (
	"fmt"
	"strconv"
	"strings"
)

// Range is an inclusive range of TCP ports; From == To for one port.
type Range struct {
	From, To uint16
}

// String is "9090" or "9090-9092".
func (r Range) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return strconv.Itoa(int(r.From)) + "-" + strconv.Itoa(int(r.To))
}

// List is a list of ranges in the order given.
type List []Range

// Parse reads a comma-separated list of ports and ranges, e.g.
// "4191,9090-9092"; spaces around items are ignored and "" is the empty
// list. flag names the flag in errors ("--skip-inbound-ports").
func Parse(flag, s string) (List, error) {
	var out List
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("%s %q: empty item; want ports or ranges separated by commas, e.g. 4191,9090-9092", flag, s)
		}
		from, to, isRange := strings.Cut(item, "-")
		a, err := port(from)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		b := a
		if isRange {
			if b, err = port(to); err != nil {
				return nil, fmt.Errorf("%s: range %q: %w", flag, item, err)
			}
			if b < a {
				return nil, fmt.Errorf("%s: range %q ends before it starts", flag, item)
			}
		}
		out = append(out, Range{From: a, To: b})
	}
	return out, nil
}

func port(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

// Contains reports whether p is in one of the ranges.
func (l List) Contains(p uint16) bool {
	for _, r := range l {
		if p >= r.From && p <= r.To {
			return true
		}
	}
	return false
}

// String is the list as Parse reads it.
func (l List) String() string {
	s := make([]string, len(l))
	for i, r := range l {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}
