// Command weft is Weft's command line: it runs a local mesh (weft up) and
// inspects and configures a running one (check, stat, apply, get, delete).
package main

import (
	"context"
	"os"

	"weft.dev/weft/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
