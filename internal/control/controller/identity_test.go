package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/httpapi"
	"weft.dev/weft/internal/mtls"
	pidentity "weft.dev/weft/internal/proxy/identity"
)

// certify runs a proxy identity manager for service account sa against c
// until the test ends, and returns it once it holds a certificate.
func certify(t *testing.T, c *Controller, proxyID, sa string) *pidentity.Manager {
	t.Helper()
	tok, err := c.IssueToken("", sa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mtls.ParseBundlePEM(c.TrustAnchorsPEM())
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := pidentity.New(pidentity.Config{ControllerAddr: c.GRPCAddr(), Bundle: b, Token: tok, ProxyID: proxyID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-mgr.Ready():
	case <-time.After(hangGuard):
		t.Fatal("no certificate from the controller")
	}
	return mgr
}

// proxyConn is a connection to c's gRPC API with a certificate for
// service account sa, as a proxy has.
func proxyConn(t *testing.T, c *Controller, sa string) *grpc.ClientConn {
	t.Helper()
	mgr := certify(t, c, sa+"-0", sa)
	conn, err := grpc.NewClient(c.GRPCAddr(), grpc.WithTransportCredentials(mgr.ControlCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestMeshAPIAuthorization(t *testing.T) {
	store := memory.New("")
	store.SetProxy(config.Proxy{ID: "web-0", Service: "web", Namespace: "default"})
	store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Namespace: "default"})
	c := run(t, store)

	// Without a client certificate: TLS to the controller, no identity.
	anchors, err := mtls.ParseBundlePEM(c.TrustAnchorsPEM())
	if err != nil {
		t.Fatal(err)
	}
	anon, err := grpc.NewClient(c.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(
		mtls.ControlClientConfig(nil, anchors, "spiffe://cluster.local/ns/weft/sa/weft-controller"))))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	web := proxyConn(t, c, "web")

	tests := []struct {
		name string
		conn *grpc.ClientConn
		req  *meshv1.InboundRequest
		want codes.Code
	}{
		{"own workload", web, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Id: "web-0", Workload: "web"}}, codes.OK},
		{"another proxy's id", web, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Id: "api-0", Workload: "web"}}, codes.PermissionDenied},
		{"another workload", web, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Workload: "api"}}, codes.PermissionDenied},
		{"lookalike workload", web, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Workload: "web-admin"}}, codes.PermissionDenied},
		{"no certificate", anon, &meshv1.InboundRequest{Proxy: &meshv1.ProxyInfo{Id: "web-0", Workload: "web"}}, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			st, err := meshv1.NewInboundClient(tt.conn).Watch(ctx, tt.req)
			if err == nil {
				_, err = st.Recv()
			}
			if got := status.Code(err); got != tt.want {
				t.Errorf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
	t.Run("destinations without certificate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		st, err := meshv1.NewDestinationsClient(anon).Watch(ctx, &meshv1.DestinationRequest{Authority: "api"})
		if err == nil {
			_, err = st.Recv()
		}
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Errorf("got %v (%v), want Unauthenticated", got, err)
		}
	})
}

// meshFirst opens a Mesh stream on conn with hello info, subscribes to
// the inbound configuration and to destination "api", and returns the
// first message about each, by "inbound" and "api", or the stream's error.
func meshFirst(conn *grpc.ClientConn, info *meshv1.ProxyInfo) (map[string]*meshv1.ControllerMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := meshv1.NewMeshClient(conn).Stream(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range []*meshv1.ProxyMessage{
		{Kind: &meshv1.ProxyMessage_Hello{Hello: info}},
		{Kind: &meshv1.ProxyMessage_Subscribe{Subscribe: &meshv1.Subscription{Inbound: true}}},
		{Kind: &meshv1.ProxyMessage_Subscribe{Subscribe: &meshv1.Subscription{Authority: "api"}}},
	} {
		if err := st.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream: Recv gives its status.
				_, err = st.Recv()
			}
			return nil, err
		}
	}
	got := map[string]*meshv1.ControllerMessage{}
	for len(got) < 2 {
		m, err := st.Recv()
		if err != nil {
			return nil, err
		}
		switch {
		case m.GetInbound() != nil || m.GetError().GetSubscription().GetInbound():
			got["inbound"] = m
		case m.GetDestination() != nil:
			got["api"] = m
		}
	}
	return got, nil
}

func TestMeshStreamAuthorization(t *testing.T) {
	store := memory.New("")
	store.SetProxy(config.Proxy{ID: "web-0", Service: "web", Namespace: "default"})
	store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Namespace: "default"})
	c := run(t, store)
	web := proxyConn(t, c, "web")
	tests := []struct {
		name string
		info *meshv1.ProxyInfo
		want codes.Code // of the inbound subscription
	}{
		{"own workload", &meshv1.ProxyInfo{Id: "web-0", Workload: "web"}, codes.OK},
		{"another proxy's id", &meshv1.ProxyInfo{Id: "api-0", Workload: "web"}, codes.PermissionDenied},
		{"another workload", &meshv1.ProxyInfo{Workload: "api"}, codes.PermissionDenied},
		{"lookalike workload", &meshv1.ProxyInfo{Workload: "web-admin"}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := meshFirst(web, tt.info)
			if err != nil {
				t.Fatal(err)
			}
			in := got["inbound"]
			if tt.want == codes.OK {
				if !in.GetInbound().GetKnown() {
					t.Fatalf("got %v, want the inbound snapshot", in)
				}
			} else if code := codes.Code(in.GetError().GetCode()); code != tt.want || !strings.Contains(in.GetError().GetMessage(), "may only watch its own workload") {
				t.Fatalf("got %v, want %v", in, tt.want)
			}
			// Destinations are not the inbound check's business.
			if got["api"].GetDestination().GetAuthority() != "api" {
				t.Fatalf("api: got %v", got["api"])
			}
		})
	}
	t.Run("no certificate", func(t *testing.T) {
		anchors, err := mtls.ParseBundlePEM(c.TrustAnchorsPEM())
		if err != nil {
			t.Fatal(err)
		}
		anon, err := grpc.NewClient(c.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(
			mtls.ControlClientConfig(nil, anchors, "spiffe://cluster.local/ns/weft/sa/weft-controller"))))
		if err != nil {
			t.Fatal(err)
		}
		defer anon.Close()
		if _, err := meshFirst(anon, &meshv1.ProxyInfo{Id: "web-0", Workload: "web"}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
	})
}

func TestIdentityAPI(t *testing.T) {
	store := memory.New("")
	store.SetProxy(config.Proxy{ID: "web-0", Service: "web", Namespace: "default"})
	store.SetProxy(config.Proxy{ID: "web-1", Service: "web", Namespace: "default"})
	// A version subset of web: its endpoints are web's, no row of its own.
	store.SetService(config.Service{Name: "web-v1", Namespace: "default", Endpoints: []config.Endpoint{
		{Address: "127.0.0.1:1", Meshed: true, Ready: true, Identity: "spiffe://cluster.local/ns/default/sa/web"}}})
	c := run(t, store)
	mgr := certify(t, c, "web-0", "web")

	req, err := http.NewRequest("GET", "http://"+c.HTTPAddr()+"/api/v1/identity", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got httpapi.IdentityResponse
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.TrustDomain != "cluster.local" || len(got.Anchors) != 1 || !strings.Contains(got.Issuer.Subject, "cluster.local") ||
		got.Issuer.NotAfter.Before(time.Now().Add(300*24*time.Hour)) {
		t.Errorf("CA = %+v", got)
	}
	if len(got.Workloads) != 1 {
		t.Fatalf("workloads = %+v, want web", got.Workloads)
	}
	w := got.Workloads[0]
	if w.Identity != "spiffe://cluster.local/ns/default/sa/web" || len(w.Proxies) != 2 {
		t.Fatalf("workload = %+v", w)
	}
	if p := w.Proxies[0]; p.ID != "web-0" || p.CertNotAfter == nil || !p.CertNotAfter.Equal(mgr.NotAfter().Truncate(time.Second)) {
		t.Errorf("web-0 = %+v, want its certificate's expiry %v", p, mgr.NotAfter())
	}
	if p := w.Proxies[1]; p.ID != "web-1" || p.CertNotAfter != nil {
		t.Errorf("web-1 = %+v, want no certificate", p)
	}
}
