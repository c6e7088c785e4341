// Package cli is the command tree of the `weft` binary: up, apply, get,
// delete, check, stat and version. cmd/weft calls Main and exits with what
// it returns.
//
// Only cmd/weft imports cli. Main may be called concurrently with different
// writers (tests do); each call builds its own command tree.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/cli/ctlapi"
	"weft.dev/weft/internal/local/statedir"
)

// env is what every command reads and writes, fixed per Main call.
type env struct {
	stdout, stderr io.Writer
	// stateDir is the --state-dir flag; "" means statedir.Default().
	stateDir string
	// proxyHTTP calls the proxies' admin servers.
	proxyHTTP *http.Client
	// checkRetries and checkRetryDelay let `weft check` wait out a
	// configuration push in flight.
	checkRetries    int
	checkRetryDelay time.Duration
	// clock is the time `weft check` judges certificates at; nil means
	// time.Now.
	clock func() time.Time
	// kube is where the cluster is (--kubeconfig, --context,
	// --control-plane-namespace).
	kube kubeTarget
	// cleanups run when the command ends (port-forwards).
	cleanups []func()
}

// exitError ends the program with code after the command printed why.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the weft command line args and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{
		stdout: stdout, stderr: stderr,
		proxyHTTP:    &http.Client{Timeout: 5 * time.Second},
		checkRetries: 5, checkRetryDelay: time.Second,
	}
	return e.run(ctx, args)
}

func (e *env) run(ctx context.Context, args []string) int {
	root := e.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	for _, f := range e.cleanups {
		f()
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(e.stderr, "Error: %v\n", err)
	return 1
}

func (e *env) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "weft",
		Short: "Weft is a service mesh: a fast sidecar proxy beside every workload and a control plane",
		Long: `Weft is a service mesh: a fast sidecar proxy beside every workload and a
control plane that configures them.

Run a local mesh with "weft up", then use "weft check", "weft stat" and
"weft apply -f FILE" from another terminal.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.PersistentFlags().StringVar(&e.stateDir, "state-dir", "", "state directory of the local mesh (default $XDG_STATE_HOME/weft or ~/.local/state/weft)")
	e.kube.register(root)
	root.AddCommand(e.upCmd(), e.applyCmd(), e.getCmd(), e.deleteCmd(), e.checkCmd(), e.statCmd(), e.edgesCmd(), e.versionCmd())
	root.AddCommand(e.authzCmd())
	root.AddCommand(e.routesCmd())
	root.AddCommand(e.identityCmd())
	root.AddCommand(e.installCmd(), e.uninstallCmd(), e.injectCmd(), e.imagesCmd())
	return root
}

// resolvedStateDir returns the state directory the commands use.
func (e *env) resolvedStateDir() (string, error) {
	if e.stateDir != "" {
		return e.stateDir, nil
	}
	return statedir.Default()
}

// client connects to the controller of the running local mesh.
func (e *env) client() (*ctlapi.Client, error) {
	dir, err := e.resolvedStateDir()
	if err != nil {
		return nil, err
	}
	c, err := statedir.ReadController(dir)
	var notRunning *statedir.NotRunningError
	if errors.As(err, &notRunning) && e.kube.atHand() {
		// No local mesh, a cluster at hand: its controller.
		return e.kubeClient()
	}
	if err != nil {
		return nil, err
	}
	return ctlapi.New(c.HTTPAddr, c.Token, nil), nil
}

// readInput reads a file, or stdin for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}
