// Package discoverytest is a fake controller for tests of the proxy: a
// real gRPC server on loopback implementing meshv1 Mesh (and the single
// watches Destinations and Inbound) with snapshots the test sets, and which the test can stop and
// restart to simulate the controller going away.
//
// Only tests import discoverytest. All methods are safe for concurrent use.
package discoverytest

import (
	"errors"
	"io"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	meshv1 "weft.dev/weft/api/meshv1"
)

// Controller is the fake. The zero value is not usable; call New.
type Controller struct {
	meshv1.UnimplementedDestinationsServer

	// mu guards everything below.
	mu       sync.Mutex
	dests    map[string]*meshv1.DestinationSnapshot // by authority
	inbound  map[string]*meshv1.InboundSnapshot     // by proxy id
	changed  chan struct{}                          // closed on every Set
	watchers map[string]int                         // open destination watches by authority
	streams  int                                    // open Mesh streams
	refuse   string                                 // refusal of inbound subscriptions, "" for none
	addr     string
	srv      *grpc.Server
	done     chan struct{} // closed when Serve of srv returned
	opts     []grpc.ServerOption
	extra    func(*grpc.Server)
}

// Serve makes every later Start serve with opts (e.g. the controller's TLS
// credentials) and register extra services (e.g. the Identity API) beside
// the mesh API. Call it before Start.
func (c *Controller) Serve(extra func(*grpc.Server), opts ...grpc.ServerOption) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts, c.extra = opts, extra
}

// New returns a stopped Controller.
func New() *Controller {
	return &Controller{
		dests:    map[string]*meshv1.DestinationSnapshot{},
		inbound:  map[string]*meshv1.InboundSnapshot{},
		changed:  make(chan struct{}),
		watchers: map[string]int{},
	}
}

// Start serves on 127.0.0.1:0 the first time, and on the same address
// after a Stop. It returns the address.
func (c *Controller) Start() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		return "", errors.New("discoverytest: already started")
	}
	addr := c.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	c.addr = ln.Addr().String()
	srv := grpc.NewServer(c.opts...)
	if c.extra != nil {
		c.extra(srv)
	}
	meshv1.RegisterDestinationsServer(srv, c)
	meshv1.RegisterInboundServer(srv, inboundServer{c: c})
	meshv1.RegisterMeshServer(srv, meshServer{c: c})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	c.srv, c.done = srv, done
	return c.addr, nil
}

// Addr returns the address once started.
func (c *Controller) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Stop kills the server and every open stream at once, as a crashed
// controller would.
func (c *Controller) Stop() {
	c.mu.Lock()
	srv, done := c.srv, c.done
	c.srv, c.done = nil, nil
	c.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Stop()
	<-done
}

// SetDestination publishes snap to the watchers of authority. Unknown
// authorities are answered with exists=false.
func (c *Controller) SetDestination(authority string, snap *meshv1.DestinationSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dests[authority] = proto.Clone(snap).(*meshv1.DestinationSnapshot)
	c.notify()
}

// SetInbound publishes snap to the proxy with id.
func (c *Controller) SetInbound(id string, snap *meshv1.InboundSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inbound[id] = proto.Clone(snap).(*meshv1.InboundSnapshot)
	c.notify()
}

// RefuseInbound makes the controller refuse inbound subscriptions on Mesh
// streams with PermissionDenied and message; "" accepts them again.
func (c *Controller) RefuseInbound(message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = message
	c.notify()
}

// Streams returns the number of open Mesh streams.
func (c *Controller) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams
}

// Watchers returns the number of open destination watches (single
// streams and Mesh subscriptions) for authority.
func (c *Controller) Watchers(authority string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchers[authority]
}

// notify wakes every stream; c.mu must be held.
func (c *Controller) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Watch implements meshv1.DestinationsServer.
func (c *Controller) Watch(req *meshv1.DestinationRequest, stream grpc.ServerStreamingServer[meshv1.DestinationSnapshot]) error {
	a := req.GetAuthority()
	c.mu.Lock()
	c.watchers[a]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.watchers[a]--
		c.mu.Unlock()
	}()
	var sent *meshv1.DestinationSnapshot
	for {
		c.mu.Lock()
		snap, ok := c.dests[a]
		changed := c.changed
		c.mu.Unlock()
		if !ok {
			snap = &meshv1.DestinationSnapshot{Authority: a, Version: 1, Exists: false}
			if sent == nil {
				if err := stream.Send(snap); err != nil {
					return err
				}
				sent = snap
			}
		} else if snap != sent {
			if err := stream.Send(snap); err != nil {
				return err
			}
			sent = snap
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// inboundServer adapts the Inbound service, whose Watch method has the
// same name as the Destinations one.
type inboundServer struct {
	meshv1.UnimplementedInboundServer
	c *Controller
}

func (s inboundServer) Watch(req *meshv1.InboundRequest, stream grpc.ServerStreamingServer[meshv1.InboundSnapshot]) error {
	c := s.c
	id := req.GetProxy().GetId()
	var sent *meshv1.InboundSnapshot
	for {
		c.mu.Lock()
		snap, ok := c.inbound[id]
		changed := c.changed
		c.mu.Unlock()
		if ok && snap != sent {
			if err := stream.Send(snap); err != nil {
				return err
			}
			sent = snap
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// meshServer adapts the Mesh service.
type meshServer struct {
	meshv1.UnimplementedMeshServer
	c *Controller
}

// Stream implements meshv1.MeshServer: a goroutine receives the
// subscriptions, the handler sends what changed.
func (s meshServer) Stream(stream meshv1.Mesh_StreamServer) error {
	c := s.c
	first, err := stream.Recv()
	if err != nil {
		return nil
	}
	id := first.GetHello().GetId()
	var mu sync.Mutex // guards subs and inbound
	subs := map[string]bool{}
	inbound := false
	wake := make(chan struct{}, 1)
	recvDone := make(chan struct{})
	c.mu.Lock()
	c.streams++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.streams--
		mu.Lock()
		defer mu.Unlock()
		for a := range subs {
			c.watchers[a]--
		}
	}()
	go func() {
		defer close(recvDone)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			c.mu.Lock()
			mu.Lock()
			if sub := msg.GetSubscribe(); sub != nil {
				if sub.GetInbound() {
					inbound = true
				} else if a := sub.GetAuthority(); !subs[a] {
					subs[a] = true
					c.watchers[a]++
				}
			} else if sub := msg.GetUnsubscribe(); sub != nil {
				if sub.GetInbound() {
					inbound = false
				} else if a := sub.GetAuthority(); subs[a] {
					delete(subs, a)
					c.watchers[a]--
				}
			}
			mu.Unlock()
			c.mu.Unlock()
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	sentDest := map[string]*meshv1.DestinationSnapshot{}
	var sentIn *meshv1.InboundSnapshot
	refused := ""
	for {
		var out []*meshv1.ControllerMessage
		c.mu.Lock()
		mu.Lock()
		for a := range subs {
			snap, ok := c.dests[a]
			if !ok {
				snap = &meshv1.DestinationSnapshot{Authority: a, Version: 1}
				if sentDest[a] != nil {
					continue
				}
			} else if sentDest[a] == snap {
				continue
			}
			sentDest[a] = snap
			out = append(out, &meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Destination{Destination: snap}})
		}
		for a := range sentDest {
			if !subs[a] {
				delete(sentDest, a)
			}
		}
		if inbound && c.refuse != "" && c.refuse != refused {
			refused = c.refuse
			sentIn = nil
			out = append(out, &meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Error{Error: &meshv1.SubscriptionError{
				Subscription: &meshv1.Subscription{Inbound: true}, Code: uint32(codes.PermissionDenied), Message: refused}}})
		} else if inbound && c.refuse == "" {
			refused = ""
			if snap, ok := c.inbound[id]; ok && snap != sentIn {
				sentIn = snap
				out = append(out, &meshv1.ControllerMessage{Kind: &meshv1.ControllerMessage_Inbound{Inbound: snap}})
			}
		}
		changed := c.changed
		mu.Unlock()
		c.mu.Unlock()
		for _, m := range out {
			if err := stream.Send(m); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
		select {
		case <-recvDone:
			return nil
		case <-stream.Context().Done():
			return nil
		case <-changed:
		case <-wake:
		}
	}
}
