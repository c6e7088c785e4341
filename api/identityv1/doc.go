// Package identityv1 is the generated Go code of the identity API
// (identity.proto): Identity.Certify exchanges a CSR and a proof of
// identity (a join token locally, a ServiceAccount token on Kubernetes) for
// a short-lived workload certificate. Never edit the generated files by
// hand: edit identity.proto and regenerate with protoc.
//
// Imported by the controller's CA (internal/control/identity) and the
// proxy's certificate manager (internal/proxy/identity).
package identityv1
