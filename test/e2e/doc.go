// Package e2e holds Weft's end-to-end tests: they run the built binaries
// exactly as a user would (`go run ./cmd/weft up` as the README says), send
// real traffic on loopback, read what a user would read (CLI output, the
// proxies' admin endpoints), and check that nothing is left running.
//
// The package has no non-test code besides this comment and the process
// helpers in proc.go; nothing imports it.
package e2e
