#!/usr/bin/env bash
# Builds the binaries of the tests against real Kubernetes parts, from the Go modules under
# test/kube/tools (each has its own go.mod, so the main module never depends on k8s.io/kubernetes,
# etcd or CoreDNS): etcd and kube-apiserver for the tests against a real API server, and
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, CoreDNS and pause for the single-node
# cluster of test/kube/cluster. The binaries go to a cache directory keyed by version and each is
# built only when missing. Prints the directory; tests find it in WEFT_KUBE_BIN_DIR.
#
#   test/kube/build.sh [DIR]     default: ${WEFT_KUBE_BIN_DIR:-~/.cache/weft-kube/v1.37.2}
#
# A cold build takes about 15 minutes on two cores (kube-apiserver about 5, the other Kubernetes
# binaries about 2 each, CoreDNS about 1, etcd under 1, pause seconds).
set -euo pipefail

KUBE_VERSION=v1.37.2
KUBE_MAJOR=1
KUBE_MINOR=37
# The commit of the v1.37.2 tag is not known offline; any 40-hex value satisfies the version parser.
KUBE_COMMIT=0000000000000000000000000000000000000000

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${WEFT_KUBE_BIN_DIR:-$HOME/.cache/weft-kube/$KUBE_VERSION}}
mkdir -p "$dir"

# build NAME MODULE_DIR [go build flags...]: builds the module's main package into $dir/NAME, static,
# unless it is there already.
build() {
	local name=$1 mod=$2
	shift 2
	[[ -x "$dir/$name" ]] && return 0
	echo "building $name into $dir" >&2
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath "$@" -o "$dir/$name.tmp" .)
	mv "$dir/$name.tmp" "$dir/$name"
}

date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kube_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$KUBE_MAJOR -X $pkg.gitMinor=$KUBE_MINOR"
	kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=$KUBE_COMMIT -X $pkg.buildDate=$date"
done

build etcd "$here/tools/etcd"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
	build "$c" "$here/tools/$c" -ldflags "$kube_ldflags"
done
build coredns "$here/tools/coredns" -ldflags "-s -w"
# pause is a package of the main module (no dependencies of its own).
build pause "$here/tools/pause" -ldflags "-s -w"

echo "$dir"
