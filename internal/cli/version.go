package cli

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
)

// Version of weft, set at build time with
// -ldflags "-X weft.dev/weft/internal/cli.Version=v0.1.0"; when empty the
// module version or VCS revision recorded by the Go toolchain is shown.
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

func (e *env) versionCmd() *cobra.Command {
	var short bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of weft and of the running local mesh's controller",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(e.stdout, "Client version: %s\n", version())
			if short {
				return nil
			}
			server := "unavailable (no local mesh is running)"
			if c, err := e.client(); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				defer cancel()
				if st, err := c.Status(ctx); err == nil {
					server = fmt.Sprintf("%s (configuration version %d)", version(), st.Version)
				} else {
					server = fmt.Sprintf("unavailable (%v)", err)
				}
			}
			fmt.Fprintf(e.stdout, "Controller version: %s\n", server)
			return nil
		},
	}
	cmd.Flags().BoolVar(&short, "client", false, "print the client version only")
	return cmd
}
