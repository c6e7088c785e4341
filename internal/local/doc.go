// Package local is the local-mode supervisor behind `weft up`: it runs the
// embedded controller, every workload of a mesh file with one weft-proxy per
// instance, and an ingress proxy per exposed service, on one machine. It
// registers an instance's endpoint once its application and proxy are both
// ready, removes it the moment either exits, restarts what exits with
// backoff, and on shutdown stops every child it started. Documents applied
// to the mesh are kept in the state directory (applied.yaml) and re-applied
// by the next `weft up` there.
//
// Only the CLI imports local. Up blocks until its context ends; a
// Supervisor's methods are safe for concurrent use.
package local
