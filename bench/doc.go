// Package bench holds Weft's side-by-side benchmark against peer proxies: the harness
// (internal/harness), the command that runs it (cmd/weftbench) and the quick test that runs
// every scenario briefly as part of the test suite. See README.md.
//
// Nothing imports bench; it has no exported API.
package bench
