package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the Go module whose source tree `weft up` builds from.
const ModulePath = "weft.dev/weft"

// FindModuleRoot walks up from dir to the directory whose go.mod declares
// ModulePath; it returns "" when dir is not inside Weft's source tree.
func FindModuleRoot(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if modulePathOf(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func modulePathOf(goMod string) string {
	data, err := os.ReadFile(goMod)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// binaries says where the programs `weft up` runs come from.
type binaries struct {
	// Proxy is the path of weft-proxy.
	Proxy string
	// BinDir is given to children as WEFT_BIN.
	BinDir string
	// build lists the packages to build into BinDir from SourceRoot; empty
	// when nothing needs building.
	build      []string
	sourceRoot string
}

// findBinaries decides where weft-proxy (and the demo when demo is set)
// come from: weft-proxy next to the running executable, else built from
// the source tree sourceRoot ("" when not inside it) into binDir.
func findBinaries(exe, sourceRoot, binDir string, demo bool) (*binaries, error) {
	b := &binaries{BinDir: binDir, sourceRoot: sourceRoot}
	if exe != "" {
		p := filepath.Join(filepath.Dir(exe), "weft-proxy")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			b.Proxy = p
			if !demo {
				b.BinDir = filepath.Dir(exe)
			}
		}
	}
	if b.Proxy == "" {
		if sourceRoot == "" {
			return nil, fmt.Errorf("weft-proxy not found next to %s, and the current directory is not inside Weft's source tree (module %s): install weft-proxy beside weft (go build -o %s ./cmd/weft-proxy), or run weft up from a checkout of Weft",
				exe, ModulePath, filepath.Dir(exe))
		}
		b.Proxy = filepath.Join(binDir, "weft-proxy")
		b.build = append(b.build, "./cmd/weft-proxy")
	}
	if demo {
		if sourceRoot == "" {
			return nil, fmt.Errorf("weft up without -f runs the demo, which is built from Weft's source tree, and the current directory is not inside it (module %s): run weft up from a checkout of Weft, or pass -f mesh.yaml with your own workloads", ModulePath)
		}
		b.build = append(b.build, "./examples/demo/...")
	}
	return b, nil
}

// what describes what build builds, for the user.
func (b *binaries) what() string {
	switch {
	case len(b.build) == 2:
		return "weft-proxy and the demo"
	case len(b.build) == 1 && b.build[0] == "./cmd/weft-proxy":
		return "weft-proxy"
	}
	return "the demo"
}

// buildAll runs `go build -o BinDir/ PKGS...` in the source tree.
func (b *binaries) buildAll(ctx context.Context, out io.Writer) error {
	if len(b.build) == 0 {
		return nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building %s needs the go command, which is not in PATH: install Go, or install weft-proxy beside weft", b.what())
	}
	fmt.Fprintf(out, "building %s…\n", b.what())
	// grpcnotrace drops grpc's request tracing (off by default) and the
	// packages it pulls in: 2.5 MB less resident code per proxy
	// (docs/performance.md, "Profiles").
	args := append([]string{"build", "-tags", "grpcnotrace", "-o", b.BinDir + string(filepath.Separator)}, b.build...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = b.sourceRoot
	// CGO_ENABLED=0, as the images: a static binary maps no libc, 1.5 MiB
	// less resident memory per proxy.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(b.build, " "), b.sourceRoot, err, strings.TrimSpace(buf.String()))
		}
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}
