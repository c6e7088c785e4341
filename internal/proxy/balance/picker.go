package balance

// Picker picks among its own weighted backends (a route rule's) while the
// endpoints' latency and failure state stays the P2C's, shared with every
// other Picker of that P2C: a slow endpoint is slow for every rule.
// A Picker is immutable and safe for concurrent use.
type Picker struct {
	b *P2C
	s *set
}

// Picker returns a Picker over backends sharing b's endpoint state.
// Include the backends' targets in b's Update (with weight 0 if b itself
// must not send them traffic), or their state is forgotten at the next
// Update.
func (b *P2C) Picker(backends []Backend) *Picker {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &set{}
	for _, be := range backends {
		bs := backendSet{service: be.Service, weight: uint64(be.Weight)}
		for _, t := range be.Targets {
			if t.Address == "" {
				continue
			}
			ep := b.states[t.Address]
			if ep == nil {
				ep = &Endpoint{cfg: &b.cfg, acc: &b.acc}
				tc := t
				if tc.Weight == 0 {
					tc.Weight = 1
				}
				ep.target.Store(&tc)
				b.states[t.Address] = ep
			}
			bs.endpoints = append(bs.endpoints, ep)
		}
		if bs.weight > 0 && len(bs.endpoints) > 0 {
			s.backends = append(s.backends, bs)
			s.total += bs.weight
			s.size += len(bs.endpoints)
		}
	}
	return &Picker{b: b, s: s}
}

// Len returns the number of endpoints that can receive traffic.
func (p *Picker) Len() int { return p.s.size }

// Pick chooses an endpoint. It returns ErrNoEndpoints when there is none.
func (p *Picker) Pick() (*Endpoint, error) { return p.b.pickFrom(p.s) }
