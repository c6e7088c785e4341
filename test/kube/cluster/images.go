package cluster

import (
	"context"
	"fmt"
	"path/filepath"

	"weft.dev/weft/internal/images"
)

// buildImages packs the pause and CoreDNS binaries as docker-archive images in Dir/images.
func (c *Cluster) buildImages(ctx context.Context) error {
	return BuildImage(ctx, c.path("images"), map[string]string{
		"pause":   filepath.Join(c.BinDir, "pause"),
		"coredns": filepath.Join(c.BinDir, "coredns"),
	})
}

// BuildImage packs static Linux binaries as docker-archive images, one per entry of binaries (image
// name to binary path): DIR/NAME.tar holding ImageRegistry/NAME:v1, whose entrypoint is
// /usr/local/bin/NAME, run as root. ImportImage loads them into the cluster.
func BuildImage(ctx context.Context, dir string, binaries map[string]string) error {
	var imgs []images.Image
	for name := range binaries {
		imgs = append(imgs, images.Image{Name: name, UID: 0})
	}
	if _, err := images.Build(ctx, imgs, images.Options{
		Out: dir, Registry: ImageRegistry, Tag: "v1", Binaries: binaries, NoIptables: true,
	}); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// ImageRef is the reference of an image BuildImage made under that name.
func ImageRef(name string) string { return ImageRegistry + "/" + name + ":v1" }
