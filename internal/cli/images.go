package cli

import (
	"slices"

	"github.com/spf13/cobra"

	"weft.dev/weft/internal/images"
	"weft.dev/weft/internal/install"
)

func (e *env) imagesCmd() *cobra.Command {
	var o images.Options
	var demo bool
	cmd := &cobra.Command{
		Use:   "images --out DIR",
		Short: "Build the weft-proxy and weft-controller container images without Docker",
		Long: `Build the weft-proxy and weft-controller images from this source tree
without a Docker engine: static binaries (CGO_ENABLED=0) packed as
docker-archive tarballs DIR/weft-proxy.tar and DIR/weft-controller.tar.
Run it at the root of the Weft source tree:

  go run ./cmd/weft images --out DIR --tag dev
  ctr -n k8s.io images import DIR/weft-proxy.tar     # or docker load -i, podman load -i
  weft install --image-tag dev --image-pull-policy Never | kubectl apply -f -

The proxy image carries this host's iptables (xtables-nft-multi, its
libraries and extensions) for "weft-proxy init"; install it first with
"apt-get install iptables".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = e.stderr
			imgs := images.Defaults
			if demo {
				imgs = append(slices.Clone(imgs), images.Demo)
			}
			_, err := images.Build(cmd.Context(), imgs, o)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Out, "out", "", "directory the image tarballs are written to (required)")
	fl.StringVar(&o.Registry, "registry", install.DefaultRegistry, "registry part of the image names")
	fl.StringVar(&o.Tag, "tag", imageTag(version()), "image tag (give weft install the same --image-tag)")
	fl.StringVar(&o.SourceDir, "source", ".", "root of the Weft source tree")
	fl.BoolVar(&demo, "demo", false, "also build the demo application's image (DIR/weft-demo.tar, see examples/demo/kubernetes)")
	fl.BoolVar(&o.NoIptables, "no-iptables", false, "leave iptables out of the proxy image (weft-proxy init will not work)")
	fl.StringVar(&o.LDFlags, "ldflags", "-s -w", "flags for go build -ldflags")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
