package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"weft.dev/weft/test/kube/cluster"
)

const (
	// imageTag is the tag the test builds the images with; the demo's
	// manifests name ghcr.io/weft-dev/weft-demo:dev.
	imageTag  = "dev"
	demoImage = "ghcr.io/weft-dev/weft-demo:" + imageTag
)

// walk is one run of the walkthrough: a cluster, the weft CLI built from
// this tree, and the images imported into the cluster's runtime.
type walk struct {
	kubeconfig string
	weftBin    string
	runs       int
}

// start builds the CLI and the images, starts a cluster (stopped when the
// test ends) and imports the images.
func start(t *testing.T) *walk {
	t.Helper()
	if err := cluster.Requirements(""); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed (apt-get install kubectl; scripts/test.sh does)")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := t.TempDir()
	w := &walk{weftBin: filepath.Join(bin, "weft")}
	build := exec.CommandContext(ctx, "go", "build", "-o", w.weftBin, "./cmd/weft")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/weft: %v\n%s", err, out)
	}
	images := t.TempDir()
	img := exec.CommandContext(ctx, w.weftBin, "images", "--demo", "--out", images, "--tag", imageTag, "--source", root)
	if out, err := img.CombinedOutput(); err != nil {
		t.Fatalf("weft images: %v\n%s", err, out)
	}

	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("cluster stop: %v", err)
		}
		if left := c.Leftovers(ctx); len(left) > 0 {
			t.Errorf("left on the machine after the cluster stopped: %v", left)
		}
	})
	for _, name := range []string{"weft-proxy", "weft-controller", "weft-demo"} {
		if err := c.ImportImage(ctx, filepath.Join(images, name+".tar")); err != nil {
			t.Fatalf("import %s: %v", name, err)
		}
	}
	w.kubeconfig = c.Kubeconfig
	// The CLI must not read a user's own configuration.
	t.Setenv("HOME", t.TempDir())
	_ = os.Unsetenv("KUBECONFIG")
	return w
}
