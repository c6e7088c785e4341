package images

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// staticBinary builds a tiny static program that prints its arguments.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Println(\"hello\", os.Args[1:]) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// extract unpacks the image's single layer into dir and returns its
// entries by absolute path.
func extract(t *testing.T, path, dir string) map[string]*tar.Header {
	t.Helper()
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatalf("%s is not a docker-archive: %v", path, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimSuffix(h.Name, "/")] = h
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, b, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func TestBuildControllerImage(t *testing.T) {
	bin := staticBinary(t)
	build := func() string {
		paths, err := Build(context.Background(), []Image{{Name: "weft-controller", UID: ControllerUID}},
			Options{Out: t.TempDir(), Registry: "registry.example.test/weft", Tag: "v1", Binaries: map[string]string{"weft-controller": bin}})
		if err != nil {
			t.Fatal(err)
		}
		return paths[0]
	}
	path := build()
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/usr/local/bin/weft-controller" {
		t.Errorf("entrypoint %q", got)
	}
	if cf.Config.User != "2103:2103" || cf.OS != "linux" {
		t.Errorf("user %q os %q, want 2103:2103 linux", cf.Config.User, cf.OS)
	}
	files := extract(t, path, t.TempDir())
	if h := files["/usr/local/bin/weft-controller"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("binary missing or not executable: %+v", h)
	}
	if files["/usr/sbin/xtables-nft-multi"] != nil {
		t.Error("the controller image carries iptables")
	}
	// The same input gives the same image.
	img2, err := tarball.ImageFromPath(build(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("digests differ between identical builds: %s, %s", d1, d2)
	}
}

func TestRefusesDynamicBinary(t *testing.T) {
	_, err := Build(context.Background(), []Image{{Name: "weft-controller"}},
		Options{Out: t.TempDir(), Registry: "r.test", Tag: "v1", Binaries: map[string]string{"weft-controller": "/bin/sh"}})
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("got %v, want a refusal naming CGO_ENABLED=0", err)
	}
}

// TestProxyImageRunsIptables runs the image's iptables in a chroot of the
// unpacked layer: every library it needs is in the image.
func TestProxyImageRunsIptables(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/xtables-nft-multi"); err != nil {
		t.Skip("iptables is not installed on this host (apt-get install iptables)")
	}
	bin := staticBinary(t)
	paths, err := Build(context.Background(), []Image{{Name: "weft-proxy", UID: ProxyUID, Iptables: true}},
		Options{Out: t.TempDir(), Registry: "r.test", Tag: "v1", Binaries: map[string]string{"weft-proxy": bin}})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	files := extract(t, paths[0], root)
	for _, want := range []string{"/usr/sbin/xtables-nft-multi", "/usr/sbin/iptables", "/usr/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/libnftnl.so.11"} {
		if files[want] == nil {
			t.Errorf("image lacks %s", want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	out, err := exec.Command("chroot", root, "/usr/sbin/iptables", "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nf_tables") {
		t.Errorf("iptables --version in the image: %v\n%s", err, out)
	}
	out, err = exec.Command("chroot", root, "/usr/local/bin/weft-proxy", "init").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello [init]") {
		t.Errorf("binary in the image: %v\n%s", err, out)
	}
}

func TestBuildDemoImage(t *testing.T) {
	bin := staticBinary(t)
	paths, err := Build(context.Background(), []Image{Demo},
		Options{Out: t.TempDir(), Registry: "registry.example.test/weft", Tag: "v1",
			Binaries: map[string]string{"web": bin, "api": bin, "quotes": bin, "load": bin}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(paths[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 0 || cf.Config.User != "65532:65532" {
		t.Errorf("entrypoint %q user %q, want none and 65532:65532", cf.Config.Entrypoint, cf.Config.User)
	}
	files := extract(t, paths[0], t.TempDir())
	for _, p := range []string{"web", "api", "quotes", "load"} {
		if h := files["/usr/local/bin/"+p]; h == nil || h.Mode&0o111 == 0 {
			t.Errorf("program %s missing or not executable: %+v", p, h)
		}
	}
	if files["/usr/local/bin/weft-demo"] != nil {
		t.Error("the demo image has a binary named after the image")
	}
}
