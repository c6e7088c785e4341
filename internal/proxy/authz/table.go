package authz

import (
	"log/slog"
	"sync/atomic"

	meshv1 "weft.dev/weft/api/meshv1"
)

// Table hands out the compiled policy of each port of the newest inbound
// snapshot. It compiles a snapshot the first time a port of it is asked
// for, once, and keeps serving that until a newer snapshot arrives.
type Table struct {
	load    func() *meshv1.InboundSnapshot
	metrics *Metrics
	log     *slog.Logger
	cur     atomic.Pointer[compiled]
}

type compiled struct {
	snap  *meshv1.InboundSnapshot
	ports map[uint32]*Policy
}

// NewTable returns a table reading snapshots from load (which must not
// block and may return nil before the first snapshot). metrics and log
// may be nil.
func NewTable(load func() *meshv1.InboundSnapshot, metrics *Metrics, log *slog.Logger) *Table {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Table{load: load, metrics: metrics, log: log}
}

// noSnapshot denies until the controller sent the inbound policy: a proxy
// is not ready before that, and must not serve unauthorised traffic in
// the meantime.
var noSnapshot = DenyAll("no inbound policy from the controller yet")

// Port returns the policy of application port port. A port the snapshot
// does not list gets AllowAll (the mesh's default when the controller
// declares no ports); an invalid policy from the controller denies
// everything (fail closed).
func (t *Table) Port(port uint32) *Policy {
	snap := t.load()
	if snap == nil {
		return noSnapshot
	}
	c := t.cur.Load()
	if c == nil || c.snap != snap {
		c = t.compile(snap)
		t.cur.Store(c)
	}
	if p, ok := c.ports[port]; ok {
		return p
	}
	return AllowAll
}

func (t *Table) compile(snap *meshv1.InboundSnapshot) *compiled {
	c := &compiled{snap: snap, ports: map[uint32]*Policy{}}
	for _, port := range snap.GetPorts() {
		p, err := Compile(port.GetPolicy(), t.metrics)
		if err != nil {
			t.log.Error("invalid inbound policy from the controller: denying the port", "port", port.GetPort(), "version", snap.GetVersion(), "err", err)
			p = DenyAll("invalid policy from the controller: " + err.Error())
		}
		c.ports[port.GetPort()] = p
	}
	return c
}
