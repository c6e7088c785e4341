// Package meshv1 is the generated Go code of the proxy <-> controller API
// (mesh.proto): Mesh.Stream carries a proxy's subscriptions to destinations
// and to its inbound configuration on one stream, answered with complete
// snapshots; Destinations.Watch and Inbound.Watch stream the same snapshots
// one watch per stream. Regenerate with protoc (and protoc-gen-go,
// protoc-gen-go-grpc) after editing mesh.proto; never edit the generated
// files by hand.
//
// Imported by the proxy (internal/proxy/...) and the controller
// (internal/control/...). Generated messages are not safe for concurrent
// mutation; the proxy treats received snapshots as immutable.
package meshv1
