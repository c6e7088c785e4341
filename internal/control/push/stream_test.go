package push

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
)

// meshStream opens a Mesh stream for proxy web-0 and says hello.
func (f *fixture) meshStream(t *testing.T) meshv1.Mesh_StreamClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	st, err := meshv1.NewMeshClient(f.conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Hello{Hello: &meshv1.ProxyInfo{Id: "web-0", Workload: "web", Namespace: "default"}}}
	if err := st.Send(hello); err != nil {
		t.Fatal(err)
	}
	return st
}

func sub(authority string) *meshv1.ProxyMessage {
	return &meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Subscribe{Subscribe: &meshv1.Subscription{Authority: authority, Inbound: authority == ""}}}
}

func unsub(authority string) *meshv1.ProxyMessage {
	return &meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Unsubscribe{Unsubscribe: &meshv1.Subscription{Authority: authority}}}
}

func send(t *testing.T, st meshv1.Mesh_StreamClient, msgs ...*meshv1.ProxyMessage) {
	t.Helper()
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
	}
}

// recvMesh receives the next message of st.
func recvMesh(t *testing.T, st meshv1.Mesh_StreamClient) *meshv1.ControllerMessage {
	t.Helper()
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// tag names a message for comparisons: "d:AUTHORITY@VERSION", "i@VERSION" or "e:AUTHORITY:CODE".
func tag(m *meshv1.ControllerMessage) string {
	switch k := m.GetKind().(type) {
	case *meshv1.ControllerMessage_Destination:
		return "d:" + k.Destination.GetAuthority()
	case *meshv1.ControllerMessage_Inbound:
		return "i"
	case *meshv1.ControllerMessage_Error:
		return "e:" + k.Error.GetSubscription().GetAuthority() + ":" + codes.Code(k.Error.GetCode()).String()
	case *meshv1.ControllerMessage_Goodbye:
		return "goodbye"
	}
	return "?"
}

func TestMeshStreamSubscribeUnsubscribe(t *testing.T) {
	f := start(t)
	f.store.SetProxy(config.Proxy{ID: "web-0", Service: "web", Namespace: "default", Ports: []config.InboundPort{{Port: 8080}}})
	f.store.SetService(config.Service{Name: "api"})
	f.store.SetService(config.Service{Name: "db"})
	st := f.meshStream(t)
	send(t, st, sub("api"), sub(""), sub("db.default:5432"), sub("api"))
	got := map[string]*meshv1.ControllerMessage{}
	for len(got) < 3 {
		m := recvMesh(t, st)
		if _, dup := got[tag(m)]; dup {
			t.Fatalf("got %s twice; a repeated subscription must change nothing", tag(m))
		}
		got[tag(m)] = m
	}
	for _, want := range []string{"d:api", "i", "d:db.default:5432"} {
		if got[want] == nil {
			t.Fatalf("first messages: got %v, want %s among them", got, want)
		}
	}
	if d := got["d:api"].GetDestination(); !d.GetExists() || d.GetService() != "api.default" {
		t.Fatalf("api: got %v", d)
	}
	if in := got["i"].GetInbound(); !in.GetKnown() || in.GetService() != "web.default" {
		t.Fatalf("inbound: got %v", in)
	}
	if s := f.srv.Sent()["web-0"]; s.Streams != 1 || len(s.Destinations) != 2 || s.Inbound == 0 {
		t.Fatalf("Sent: got %+v, want one stream, two destinations and the inbound version", s)
	}

	// A change of api reaches only api's subscription.
	f.store.UpsertEndpoint(config.Key("api", "default"), ready("127.0.0.1:9001"))
	m := recvMesh(t, st)
	if tag(m) != "d:api" || len(m.GetDestination().GetBackends()[0].GetEndpoints()) != 1 {
		t.Fatalf("after api changed: got %s %v, want api with its endpoint", tag(m), m)
	}

	// Unsubscribed, api hears nothing more; db still does.
	send(t, st, unsub("api"))
	waitFor(t, func() bool { return len(f.srv.Sent()["web-0"].Destinations) == 1 })
	f.store.UpsertEndpoint(config.Key("api", "default"), ready("127.0.0.1:9002"))
	f.store.UpsertEndpoint(config.Key("db", "default"), ready("127.0.0.1:5432"))
	if m := recvMesh(t, st); tag(m) != "d:db.default:5432" {
		t.Fatalf("after unsubscribing api: got %s, want only db", tag(m))
	}

	// Bad subscriptions are refused one by one; the stream goes on.
	send(t, st, sub(":80"), &meshv1.ProxyMessage{Kind: &meshv1.ProxyMessage_Subscribe{Subscribe: &meshv1.Subscription{}}}, sub("api"))
	for _, want := range []string{"e::80:InvalidArgument", "e::InvalidArgument", "d:api"} {
		if m := recvMesh(t, st); tag(m) != want {
			t.Fatalf("got %s (%v), want %s", tag(m), m, want)
		}
	}

	// Shutdown says goodbye; the client ends the stream.
	f.srv.Shutdown()
	if m := recvMesh(t, st); tag(m) != "goodbye" {
		t.Fatalf("after Shutdown: got %s, want goodbye", tag(m))
	}
}

func TestMeshStreamHelloFirst(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := meshv1.NewMeshClient(f.conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(t, st, sub("api"))
	if _, err := st.Recv(); err == nil || !strings.Contains(err.Error(), "hello") {
		t.Fatalf("subscribe before hello: got %v, want an error naming hello", err)
	}
}

func TestMeshStreamInboundAuthorization(t *testing.T) {
	f := start(t)
	var allowed atomic.Bool
	f.srv.authorizeInbound = func(ctx context.Context, info *meshv1.ProxyInfo) error {
		if allowed.Load() {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "proxy %s may not", info.GetId())
	}
	f.store.SetProxy(config.Proxy{ID: "web-0", Service: "web", Namespace: "default"})
	st := f.meshStream(t)
	send(t, st, sub(""))
	m := recvMesh(t, st)
	if e := m.GetError(); !e.GetSubscription().GetInbound() || codes.Code(e.GetCode()) != codes.PermissionDenied || !strings.Contains(e.GetMessage(), "web-0 may not") {
		t.Fatalf("got %v, want the inbound subscription refused", m)
	}
	// Checked again on every change: once allowed, the snapshot comes.
	allowed.Store(true)
	f.store.SetService(config.Service{Name: "other"})
	if m := recvMesh(t, st); !m.GetInbound().GetKnown() {
		t.Fatalf("once allowed: got %v, want the inbound snapshot", m)
	}
}

// waitFor polls cond until it holds, within hangGuard.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(time.Millisecond)
	}
}
