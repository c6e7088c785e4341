// Command caddy builds the Caddy server (its standard modules) at the version pinned in this
// module's go.mod, for the side-by-side benchmark in bench/. It lives in its own module so that
// Caddy's dependencies stay out of Weft's module.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
