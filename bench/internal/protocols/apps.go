// Package protocols measures the protocols other than HTTP/1.1 through a proxy pair and
// directly: HTTP/2 (h2c from the client), gRPC unary and bidirectional streaming, and TCP bulk
// throughput. It holds the applications (an h2c echo, a gRPC echo service, a TCP echo), the
// paced load for request/response protocols and the bulk transfer, runs every path over several
// repetitions (Run) and summarises them as the median, min and max of each figure (Summarise).
//
// Only the benchmark harness and its tests import protocols. Apps and the load functions are
// safe to call concurrently.
package protocols

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"weft.dev/weft/bench/internal/echo"
)

// Apps are the three applications, each on its own loopback listener.
type Apps struct {
	// H2, GRPC and TCP are host:port of the h2c echo, the gRPC echo and the TCP echo.
	H2, GRPC, TCP string

	srvH2   *http.Server
	srvGRPC *grpc.Server
	lnTCP   net.Listener
	wg      sync.WaitGroup
}

// StartApps starts the applications; Stop them.
func StartApps() (*Apps, error) {
	var lns [3]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns[i] = ln
	}
	a := &Apps{H2: lns[0].Addr().String(), GRPC: lns[1].Addr().String(), TCP: lns[2].Addr().String(), lnTCP: lns[2]}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	a.srvH2 = &http.Server{Handler: echo.Handler(), Protocols: &protos, ReadHeaderTimeout: 10 * time.Second}
	a.srvGRPC = grpc.NewServer()
	a.srvGRPC.RegisterService(&echoServiceDesc, echoServer{})
	a.wg.Go(func() { _ = a.srvH2.Serve(lns[0]) })
	a.wg.Go(func() { _ = a.srvGRPC.Serve(lns[1]) })
	a.wg.Go(func() { serveTCPEcho(lns[2], &a.wg) })
	return a, nil
}

// Stop stops the applications and waits for them.
func (a *Apps) Stop() {
	_ = a.srvH2.Close()
	a.srvGRPC.Stop()
	_ = a.lnTCP.Close()
	a.wg.Wait()
}

// serveTCPEcho copies every connection's bytes back until the peer closes it.
func serveTCPEcho(ln net.Listener, wg *sync.WaitGroup) {
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			_, _ = io.Copy(c, c)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// The gRPC echo service "weftbench.Echo": Unary answers the bytes it receives, Stream answers
// every message of a bidirectional stream with the same bytes. Messages are
// google.protobuf.BytesValue, so no generated code is needed.
const (
	echoService  = "weftbench.Echo"
	unaryMethod  = "/" + echoService + "/Unary"
	streamMethod = "/" + echoService + "/Stream"
)

type echoServer struct{}

type echoHandler interface{ isEcho() }

func (echoServer) isEcho() {}

var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*echoHandler)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				in := new(wrapperspb.BytesValue)
				if err := stream.RecvMsg(in); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := stream.SendMsg(in); err != nil {
					return err
				}
			}
		},
	}},
}
