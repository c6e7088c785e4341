// Package quotespb holds the protobuf messages and gRPC stubs of the demo's
// quotes service (demo.quotes.v1.Quotes), generated from quotes.proto with
// protoc-gen-go and protoc-gen-go-grpc; regenerate rather than edit. Any demo
// program may import it. Clients and servers built from it are safe for
// concurrent use as grpc-go documents; messages are not.
package quotespb
