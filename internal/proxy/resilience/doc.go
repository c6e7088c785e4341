// Package resilience holds the proxy's client- and server-side protections
// as small, independent pieces compiled from the controller's snapshots
// (api/meshv1 RetryPolicy, FaultInjection, Resilience, RateLimit):
//
//   - Budget: a Linkerd-style retry budget, retries may add at most a ratio
//     of the live request rate plus a minimum per second;
//   - Retry: when a failed attempt may be sent again, and how long to wait;
//   - Fault: the delay or abort to inject into a request;
//   - Bucket and Limiter: token buckets for local rate limiting, with
//     per-identity overrides;
//   - Gate: a bound on pending requests per destination.
//
// Nothing here does I/O or starts goroutines; the outbound and inbound
// servers (internal/proxy/outbound, inbound) call these on their request
// paths. Every type is safe for concurrent use unless its doc says
// otherwise; compiled values (Retry, Fault) are immutable.
package resilience
