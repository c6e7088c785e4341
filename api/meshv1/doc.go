// Package meshv1 is the generated Go code of the proxy <-> controller API
// (mesh.proto): Destinations.Watch and Inbound.Watch stream complete
// snapshots to proxies. Regenerate with protoc (and protoc-gen-go,
// protoc-gen-go-grpc) after editing mesh.proto; never edit the generated
// files by hand.
//
// Imported by the proxy (internal/proxy/...) and the controller
// (internal/control/...). Generated messages are not safe for concurrent
// mutation; the proxy treats received snapshots as immutable.
package meshv1
