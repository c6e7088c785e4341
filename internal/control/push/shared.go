package push

import (
	"crypto/sha256"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// This file holds what the watch streams (and Mesh streams) share, so that thousands of
// proxies watching the same destination cost one computation, one
// serialisation and one debounce timer per change instead of one each:
//
//   - feed debounces the source's changes once for every stream and
//     publishes rounds: each round carries the snapshot to evaluate and a
//     channel closed when the next round is published. It runs one
//     goroutine while at least one stream watches.
//   - cache keeps, for the newest snapshot version (and the one before
//     while a stream still walks it), every message computed from it (per
//     destination and authority, per resolved inbound proxy), with a
//     digest of its encoding without the version for comparison and, once
//     a stream asked for it, a grpc.PreparedMsg every stream sends as is.

// round is one published snapshot of the feed.
type round struct {
	snap *config.Snapshot
	// next is closed when the next round is published; newer is set
	// before.
	next  chan struct{}
	newer *round
}

// feed is the debounced view of a config.Source shared by all streams.
type feed struct {
	src      config.Source
	debounce time.Duration
	done     <-chan struct{} // the server's shutdown

	mu       sync.Mutex
	watchers int
	cur      *round
	stop     chan struct{} // closed to stop the running goroutine; nil when none runs
	// streams are the open Mesh streams, kicked on every new round.
	streams map[*meshStream]struct{}

	// pumps counts the Mesh streams' running pumps; pumpDone is signalled
	// (without blocking) when one ends. kickAll paces a round's kicks by
	// them.
	pumps    atomic.Int32
	pumpDone chan struct{}
}

// Pacing of a round's kicks (see kickAll).
const (
	// maxPumps is how many pumps a round lets run at once: enough to keep
	// every CPU busy sending, few enough that a round does not start one
	// goroutine (and stack) per stream at the same instant.
	maxPumps = 32
	// pumpWait is how long kickAll waits for a running pump to end before
	// it lets maxPumps more run: a pump whose proxy stopped reading blocks
	// in Send, and must not hold up the others.
	pumpWait = 10 * time.Millisecond
)

// pumpStarted and pumpEnded count a Mesh stream's pump.
func (f *feed) pumpStarted() { f.pumps.Add(1) }

func (f *feed) pumpEnded() {
	f.pumps.Add(-1)
	select {
	case f.pumpDone <- struct{}{}:
	default:
	}
}

// kickAll kicks every stream of streams, letting at most maxPumps pumps
// run at once (more while some are blocked, see pumpWait). It returns
// early when stop is closed or the server shuts down.
func (f *feed) kickAll(streams []*meshStream, stop <-chan struct{}) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	allowed := int32(maxPumps)
	for _, m := range streams {
		for f.pumps.Load() >= allowed {
			if t == nil {
				t = time.NewTimer(pumpWait)
			} else {
				t.Reset(pumpWait)
			}
			select {
			case <-f.pumpDone:
			case <-t.C:
				allowed += maxPumps
			case <-stop:
				return
			case <-f.done:
				return
			}
		}
		m.kick()
	}
}

// add registers a Mesh stream to kick on every new round.
func (f *feed) add(m *meshStream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams == nil {
		f.streams = map[*meshStream]struct{}{}
	}
	f.streams[m] = struct{}{}
}

// remove unregisters a Mesh stream.
func (f *feed) remove(m *meshStream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.streams, m)
}

// current returns the newest round.
func (f *feed) current() *round {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

// shutdown asks every Mesh stream's proxy to end its stream.
func (f *feed) shutdown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for m := range f.streams {
		m.shutdown()
	}
}

// join registers a watching stream and returns the current round; call
// leave when the stream ends.
func (f *feed) join() *round {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchers++
	if f.stop == nil {
		f.stop = make(chan struct{})
		f.publishLocked(f.src.Snapshot())
		go f.run(f.stop)
	}
	return f.cur
}

// leave unregisters a stream; the last one stops the feed's goroutine.
func (f *feed) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchers--
	if f.watchers == 0 && f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
}

// publishLocked makes snap the current round; f.mu is held.
func (f *feed) publishLocked(snap *config.Snapshot) {
	r := &round{snap: snap, next: make(chan struct{})}
	if old := f.cur; old != nil {
		old.newer = r
		close(old.next)
	}
	f.cur = r
}

// run waits for changes of the source, debounces them and publishes a
// round per burst, until stop or the server's shutdown.
func (f *feed) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		changed := f.src.Changed()
		snap := f.src.Snapshot()
		f.mu.Lock()
		if f.stop != stop { // stopped and perhaps restarted meanwhile
			f.mu.Unlock()
			return
		}
		var kick []*meshStream
		if f.cur.snap.Version != snap.Version {
			f.publishLocked(snap)
			kick = slices.Collect(maps.Keys(f.streams))
		}
		f.mu.Unlock()
		// A stream added meanwhile walks the new round on its own first
		// subscription; one removed ignores the kick.
		f.kickAll(kick, stop)
		select {
		case <-stop:
			return
		case <-f.done:
			return
		case <-changed:
		}
		t.Reset(f.debounce)
		select {
		case <-stop:
			return
		case <-f.done:
			return
		case <-t.C:
		}
	}
}

// entry is one message computed from one snapshot, shared by every
// stream that asks for the same thing.
type entry struct {
	once sync.Once
	msg  proto.Message
	// sum is the SHA-256 of the deterministic encoding of msg without its
	// version: two entries with equal sums carry the same configuration.
	// summed is false when the encoding failed; such an entry equals no
	// other.
	sum    [sha256.Size]byte
	summed bool

	prepOnce sync.Once
	prepared *grpc.PreparedMsg // nil when encoding for a stream failed

	// wrapped is msg inside a ControllerMessage, for Mesh streams, and
	// wrappedPrepared its shared encoding (see sendWrapped).
	wrapOnce        sync.Once
	wrapped         *meshv1.ControllerMessage
	wrappedPrepared *grpc.PreparedMsg
}

// same reports whether e and o carry the same configuration.
func (e *entry) same(o *entry) bool { return e == o || (e.summed && o.summed && e.sum == o.sum) }

// send sends e on stream, encoded once for all streams. The encoding is
// made with the first stream's codec and compressor; the controller
// registers no compressor, so it is the plain proto encoding every stream
// accepts. (Were one registered, a compressed PreparedMsg would reach
// streams that did not negotiate it.)
func (e *entry) send(stream grpc.ServerStream) error {
	e.prepOnce.Do(func() {
		p := &grpc.PreparedMsg{}
		if err := p.Encode(stream, e.msg); err == nil {
			e.prepared = p
		}
	})
	if e.prepared != nil {
		return stream.SendMsg(e.prepared)
	}
	return stream.SendMsg(e.msg)
}

// generation is the cache of one snapshot.
type generation struct {
	snap *config.Snapshot

	mu      sync.Mutex
	entries map[entryKey]*entry

	// byWorkload maps a workload to the first proxy (by ID) of that
	// workload, built on first use.
	indexOnce  sync.Once
	byWorkload map[workloadKey]*config.Proxy
}

// entryKey names an entry of a generation: a destination asked for with
// an authority (by service, or by a captured connection's original
// destination addr), or the inbound snapshot of a proxy ("" when none is
// known). It is a comparable value, so a lookup allocates nothing.
type entryKey struct {
	kind      entryKind
	svc       config.ServiceKey
	addr      netip.AddrPort
	authority string
	proxy     string
	// policy is the mesh's default inbound policy, for an inbound entry.
	policy meshv1.InboundPolicy_Default
}

type entryKind uint8

const (
	byService entryKind = iota
	byAddress
	inbound
)

type workloadKey struct{ namespace, workload string }

// cache holds the generation of the newest snapshot version, and the one
// before while a stream still walks it: streams that read a round just
// before the next one was published share it too, and once none holds it
// the collector takes it (a stream keeps only the digest of what it sent).
type cache struct {
	mu   sync.Mutex
	cur  *generation
	prev weak.Pointer[generation]
}

// gen returns the generation of snap; for an older snapshot no longer
// held, a fresh one that is not kept.
func (c *cache) gen(snap *config.Snapshot) *generation {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && c.cur.snap.Version == snap.Version {
		return c.cur
	}
	if prev := c.prev.Value(); prev != nil && prev.snap.Version == snap.Version {
		return prev
	}
	if c.cur == nil || snap.Version > c.cur.snap.Version {
		n := 0
		if c.cur != nil {
			c.cur.mu.Lock()
			n = len(c.cur.entries) // streams mostly ask for the same again
			c.cur.mu.Unlock()
			c.prev = weak.Make(c.cur)
		}
		c.cur = &generation{snap: snap, entries: make(map[entryKey]*entry, n)}
		return c.cur
	}
	return &generation{snap: snap, entries: map[entryKey]*entry{}}
}

// digestBuffers hold the encodings being digested (see get).
var digestBuffers = sync.Pool{New: func() any { return new([]byte) }}

// get returns the entry named k, computing it with build on first use;
// version points to the built message's version field.
func (g *generation) get(k entryKey, build func(*generation, entryKey) proto.Message, version func(proto.Message) *uint64) *entry {
	g.mu.Lock()
	e := g.entries[k]
	if e == nil {
		e = &entry{}
		g.entries[k] = e
	}
	g.mu.Unlock()
	e.once.Do(func() {
		e.msg = build(g, k)
		// The version is left out of the comparison: it is zeroed while
		// encoding (no other goroutine sees msg yet) and put back.
		v := version(e.msg)
		was := *v
		*v = 0
		buf := digestBuffers.Get().(*[]byte)
		b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend((*buf)[:0], e.msg)
		*v = was
		// Marshalling a message the package just built cannot fail; if
		// it did, the next comparison would only say "changed".
		if err == nil {
			e.sum, e.summed = sha256.Sum256(b), true
		}
		*buf = b
		digestBuffers.Put(buf)
	})
	return e
}

func destinationVersion(m proto.Message) *uint64 { return &m.(*meshv1.DestinationSnapshot).Version }

func inboundVersion(m proto.Message) *uint64 { return &m.(*meshv1.InboundSnapshot).Version }

func buildDestination(g *generation, k entryKey) proto.Message {
	return Destination(g.snap, k.svc, k.authority)
}

func buildDestinationByAddress(g *generation, k entryKey) proto.Message {
	return DestinationByAddress(g.snap, k.addr, k.authority)
}

func buildInbound(g *generation, k entryKey) proto.Message {
	var p *config.Proxy
	if k.proxy != "" {
		p = g.snap.Proxies[k.proxy]
	}
	return inboundOf(g.snap, p, k.policy)
}

// destination returns the shared DestinationSnapshot of key, as asked
// for with authority.
func (g *generation) destination(key config.ServiceKey, authority string) *entry {
	return g.get(entryKey{kind: byService, svc: key, authority: authority}, buildDestination, destinationVersion)
}

// destinationByAddress returns the shared DestinationSnapshot of a
// captured connection's original destination addr.
func (g *generation) destinationByAddress(addr netip.AddrPort, authority string) *entry {
	return g.get(entryKey{kind: byAddress, addr: addr, authority: authority}, buildDestinationByAddress, destinationVersion)
}

// inbound returns the shared InboundSnapshot of the proxy info describes
// (see InboundWithDefault).
func (g *generation) inbound(info *meshv1.ProxyInfo, meshDefault meshv1.InboundPolicy_Default) *entry {
	p := g.snap.Proxies[info.GetId()]
	if p == nil && info.GetWorkload() != "" {
		g.indexOnce.Do(func() {
			g.byWorkload = map[workloadKey]*config.Proxy{}
			for _, id := range slices.Sorted(maps.Keys(g.snap.Proxies)) {
				q := g.snap.Proxies[id]
				if k := (workloadKey{q.Namespace, q.Service}); g.byWorkload[k] == nil {
					g.byWorkload[k] = q
				}
			}
		})
		ns := info.GetNamespace()
		if ns == "" {
			ns = config.DefaultNamespace
		}
		p = g.byWorkload[workloadKey{ns, info.GetWorkload()}]
	}
	k := entryKey{kind: inbound, policy: meshDefault} // no proxy known: the same empty snapshot for all
	if p != nil {
		k.proxy = p.ID
	}
	return g.get(k, buildInbound, inboundVersion)
}
