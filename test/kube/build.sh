#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries that the tests against a real API server run, from the
# Go modules under test/kube/tools (each has its own go.mod, so the main module never depends on
# k8s.io/kubernetes or etcd). The binaries go to a cache directory keyed by version and are built only
# when missing. Prints the directory; tests find it in WEFT_KUBE_BIN_DIR.
#
#   test/kube/build.sh [DIR]     default: ${WEFT_KUBE_BIN_DIR:-~/.cache/weft-kube/v1.37.2}
#
# A cold build takes several minutes on two cores (kube-apiserver about 5, etcd under 1).
set -euo pipefail

KUBE_VERSION=v1.37.2
KUBE_MAJOR=1
KUBE_MINOR=37
# The commit of the v1.37.2 tag is not known offline; any 40-hex value satisfies the version parser.
KUBE_COMMIT=0000000000000000000000000000000000000000

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${WEFT_KUBE_BIN_DIR:-$HOME/.cache/weft-kube/$KUBE_VERSION}}
mkdir -p "$dir"

if [[ ! -x "$dir/etcd" ]]; then
	echo "building etcd into $dir (about a minute)" >&2
	(cd "$here/tools/etcd" && CGO_ENABLED=0 go build -trimpath -o "$dir/etcd.tmp" .)
	mv "$dir/etcd.tmp" "$dir/etcd"
fi

if [[ ! -x "$dir/kube-apiserver" ]]; then
	echo "building kube-apiserver $KUBE_VERSION into $dir (about 5 minutes)" >&2
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	ldflags=""
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$KUBE_MAJOR -X $pkg.gitMinor=$KUBE_MINOR"
		ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=$KUBE_COMMIT -X $pkg.buildDate=$date"
	done
	(cd "$here/tools/kube-apiserver" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/kube-apiserver.tmp" .)
	mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
fi

echo "$dir"
