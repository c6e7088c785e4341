// Package images packs Weft's static binaries into container images
// without a Docker engine: `weft images --out DIR` writes one
// docker-archive tarball per image (readable by `docker load`, `ctr images
// import` and `podman load`), built with go-containerregistry.
//
// The weft-proxy image also runs `weft-proxy init`, which needs iptables:
// it carries the build host's xtables-nft-multi (iptables in nftables
// mode), the shared libraries it links and the xtables extensions
// (install them with `apt-get install iptables`).
//
// The CLI imports images, and the test cluster (test/kube/cluster) packs
// its own images with it. Build runs `go build` and reads host files;
// calls with different output directories may run concurrently.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Users of the images (see the injector's proxy UID and the controller's
// Deployment).
const (
	ProxyUID      = 2102
	ControllerUID = 2103
)

// Image is one image to build.
type Image struct {
	// Name is the image and binary name: weft-proxy or weft-controller.
	Name string
	// Package is the Go package of the binary, e.g. ./cmd/weft-proxy.
	Package string
	// UID the image runs as.
	UID int
	// Iptables adds iptables (xtables-nft-multi) from the host.
	Iptables bool
	// Programs are more Go packages whose binaries go to /usr/local/bin,
	// each named after the package's last path element. An image without
	// a Package has no entrypoint: its users name the program to run.
	Programs []string
}

// Defaults are Weft's images.
var Defaults = []Image{
	{Name: "weft-proxy", Package: "./cmd/weft-proxy", UID: ProxyUID, Iptables: true},
	{Name: "weft-controller", Package: "./cmd/weft-controller", UID: ControllerUID},
}

// Demo is the image of the demo application (examples/demo): its four
// programs, run as an unprivileged user.
var Demo = Image{
	Name: "weft-demo", UID: 65532,
	Programs: []string{"./examples/demo/web", "./examples/demo/api", "./examples/demo/quotes", "./examples/demo/load"},
}

// Options of Build.
type Options struct {
	// Out is the directory the tarballs are written to; required.
	Out string
	// Registry and Tag make the image references, e.g.
	// ghcr.io/weft-dev/weft-proxy:v0.1.0; both required.
	Registry, Tag string
	// SourceDir is the module's root, where `go build` runs; "" means the
	// current directory.
	SourceDir string
	// Binaries maps an image name to a prebuilt static binary, which is
	// packed instead of building its Package.
	Binaries map[string]string
	// NoIptables leaves iptables out of every image.
	NoIptables bool
	// LDFlags are passed to go build (e.g. a version stamp).
	LDFlags string
	// Root is prefixed to host paths read for iptables; "" means "/".
	Root string
	// Log is told what happens; nil is silent.
	Log io.Writer
}

// Build builds the images and returns the paths of the tarballs.
func Build(ctx context.Context, imgs []Image, o Options) ([]string, error) {
	if o.Out == "" || o.Registry == "" || o.Tag == "" {
		return nil, errors.New("images: the output directory, registry and tag are required")
	}
	if runtime.GOOS != "linux" && len(o.Binaries) == 0 {
		return nil, fmt.Errorf("images: build on Linux (the proxy image carries the host's iptables), or give prebuilt linux binaries")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	tmp, err := os.MkdirTemp("", "weft-images-")
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	var out []string
	for _, im := range imgs {
		bin := o.Binaries[im.Name]
		if bin == "" && im.Package != "" {
			bin = filepath.Join(tmp, im.Name)
			fmt.Fprintf(log, "building %s (CGO_ENABLED=0)\n", im.Package)
			if err := goBuild(ctx, o, im.Package, bin); err != nil {
				return nil, err
			}
		}
		programs := map[string]string{}
		for _, pkg := range im.Programs {
			name := path.Base(pkg)
			p := o.Binaries[name]
			if p == "" {
				p = filepath.Join(tmp, im.Name+"-programs", name)
				fmt.Fprintf(log, "building %s (CGO_ENABLED=0)\n", pkg)
				if err := goBuild(ctx, o, pkg, p); err != nil {
					return nil, err
				}
			}
			programs[name] = p
		}
		ref, err := name.NewTag(strings.TrimSuffix(o.Registry, "/") + "/" + im.Name + ":" + o.Tag)
		if err != nil {
			return nil, fmt.Errorf("images: image reference for %s: %w", im.Name, err)
		}
		img, err := image(im, bin, programs, o)
		if err != nil {
			return nil, err
		}
		tarPath := filepath.Join(o.Out, im.Name+".tar")
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			return nil, fmt.Errorf("images: write %s: %w", tarPath, err)
		}
		fmt.Fprintf(log, "wrote %s (%s)\n", tarPath, ref)
		out = append(out, tarPath)
	}
	return out, nil
}

func goBuild(ctx context.Context, o Options, pkg, dst string) error {
	// grpcnotrace: see docs/performance.md, "Profiles".
	args := []string{"build", "-trimpath", "-tags", "grpcnotrace", "-o", dst}
	if o.LDFlags != "" {
		args = append(args, "-ldflags", o.LDFlags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = o.SourceDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("images: go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

// image assembles one image: a single layer with the binary, users and,
// for the proxy, iptables.
func image(im Image, bin string, programs map[string]string, o Options) (v1.Image, error) {
	l := newLayer()
	l.dir("/tmp", 0o1777)
	l.file("/etc/passwd", []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nweft-proxy:x:%d:%d::/nonexistent:/sbin/nologin\nweft-controller:x:%d:%d::/nonexistent:/sbin/nologin\nnonroot:x:65532:65532::/nonexistent:/sbin/nologin\n",
		ProxyUID, ProxyUID, ControllerUID, ControllerUID)), 0o644)
	l.file("/etc/group", []byte(fmt.Sprintf("root:x:0:\nweft-proxy:x:%d:\nweft-controller:x:%d:\nnonroot:x:65532:\n", ProxyUID, ControllerUID)), 0o644)
	bins := map[string]string{}
	for name, p := range programs {
		bins[name] = p
	}
	if bin != "" {
		bins[im.Name] = bin
	}
	for _, name := range slices.Sorted(maps.Keys(bins)) {
		f, err := readStatic(bins[name])
		if err != nil {
			return nil, err
		}
		l.file("/usr/local/bin/"+name, f, 0o755)
	}
	if im.Iptables && !o.NoIptables {
		if err := addIptables(l, o.Root); err != nil {
			return nil, err
		}
	}
	data, err := l.bytes()
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, fmt.Errorf("images: layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	var entrypoint []string
	if bin != "" {
		entrypoint = []string{"/usr/local/bin/" + im.Name}
	}
	cf.Config = v1.Config{
		Entrypoint: entrypoint,
		User:       fmt.Sprintf("%d:%d", im.UID, im.UID),
		Env:        []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Labels:     map[string]string{"org.opencontainers.image.title": im.Name},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	return img, nil
}

// readStatic reads a binary and refuses what a scratch image cannot run.
func readStatic(bin string) ([]byte, error) {
	f, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if ef, err := elf.NewFile(bytes.NewReader(f)); err != nil {
		return nil, fmt.Errorf("images: %s is not a Linux binary: %w", bin, err)
	} else if interp := ef.Section(".interp"); interp != nil {
		return nil, fmt.Errorf("images: %s is dynamically linked; build it with CGO_ENABLED=0", bin)
	}
	return f, nil
}

// iptablesNames are the commands xtables-nft-multi answers to by name.
var iptablesNames = []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save",
	"iptables-nft", "iptables-nft-restore", "iptables-nft-save", "ip6tables-nft", "ip6tables-nft-restore", "ip6tables-nft-save"}

// addIptables copies xtables-nft-multi, the libraries it needs (found in
// its ELF dependencies), the dynamic loader and the xtables extensions.
func addIptables(l *layer, root string) error {
	if root == "" {
		root = "/"
	}
	const bin = "/usr/sbin/xtables-nft-multi"
	const libdir = "/usr/lib/x86_64-linux-gnu"
	if _, err := os.Stat(filepath.Join(root, bin)); err != nil {
		return fmt.Errorf("images: the proxy image needs iptables from this host: %w (install it with `apt-get install iptables`, or pass --no-iptables for an image without `weft-proxy init`)", err)
	}
	data, err := os.ReadFile(filepath.Join(root, bin))
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	l.file(bin, data, 0o755)
	for _, n := range iptablesNames {
		l.symlink("/usr/sbin/"+n, "xtables-nft-multi")
	}
	exts, _ := filepath.Glob(filepath.Join(root, libdir, "xtables", "*.so"))
	sort.Strings(exts)
	queue := []string{filepath.Join(root, bin)}
	for _, e := range exts {
		b, err := os.ReadFile(e)
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		l.file(strings.TrimPrefix(e, filepath.Clean(root)), b, 0o644)
		queue = append(queue, e)
	}
	// The libraries, transitively.
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		ef, err := elf.Open(p)
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		libs, err := ef.ImportedLibraries()
		interp := ""
		if s := ef.Section(".interp"); s != nil {
			if b, err := s.Data(); err == nil {
				interp = strings.TrimRight(string(b), "\x00")
			}
		}
		ef.Close()
		if err != nil {
			return fmt.Errorf("images: %s: %w", p, err)
		}
		if interp != "" && !seen[interp] {
			seen[interp] = true
			b, err := os.ReadFile(filepath.Join(root, interp))
			if err != nil {
				return fmt.Errorf("images: dynamic loader: %w", err)
			}
			l.file(interp, b, 0o755)
		}
		for _, lib := range libs {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			found := ""
			for _, dir := range []string{libdir, "/lib/x86_64-linux-gnu", libdir + "/xtables"} {
				if _, err := os.Stat(filepath.Join(root, dir, lib)); err == nil {
					found = filepath.Join(dir, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("images: library %s of %s not found under %s", lib, p, libdir)
			}
			b, err := os.ReadFile(filepath.Join(root, found))
			if err != nil {
				return fmt.Errorf("images: %w", err)
			}
			// Debian merges /lib into /usr/lib: both paths resolve.
			l.file(libdir+"/"+lib, b, 0o644)
			queue = append(queue, filepath.Join(root, found))
		}
	}
	l.symlink("/lib", "usr/lib")
	l.symlink("/lib64", "usr/lib64")
	if interp := "/lib64/ld-linux-x86-64.so.2"; seen[interp] {
		// Written above under /lib64; move it under /usr/lib64 so the
		// /lib64 symlink serves it.
		l.rename(interp, "/usr/lib64/ld-linux-x86-64.so.2")
	}
	return nil
}

// layer is a tar being assembled; entries are written sorted by path,
// with parents first and fixed timestamps, so the same files give the
// same digest.
type layer struct {
	entries map[string]*tar.Header
	data    map[string][]byte
}

func newLayer() *layer {
	return &layer{entries: map[string]*tar.Header{}, data: map[string][]byte{}}
}

func (l *layer) parents(p string) {
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755}
		}
	}
}

func (l *layer) dir(p string, mode int64) {
	l.parents(p)
	l.entries[p] = &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode}
}

func (l *layer) file(p string, b []byte, mode int64) {
	l.parents(p)
	l.entries[p] = &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(b))}
	l.data[p] = b
}

func (l *layer) symlink(p, target string) {
	l.parents(p)
	l.entries[p] = &tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: target, Mode: 0o777}
}

func (l *layer) rename(from, to string) {
	h, ok := l.entries[from]
	if !ok {
		return
	}
	b := l.data[from]
	delete(l.entries, from)
	delete(l.data, from)
	l.file(to, b, h.Mode)
}

func (l *layer) bytes() ([]byte, error) {
	paths := make([]string, 0, len(l.entries))
	for p := range l.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		h := *l.entries[p]
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("images: tar %s: %w", p, err)
		}
		if b := l.data[p]; b != nil {
			if _, err := tw.Write(b); err != nil {
				return nil, fmt.Errorf("images: tar %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("images: tar: %w", err)
	}
	return buf.Bytes(), nil
}
