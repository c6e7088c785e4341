#!/usr/bin/env bash
# Runs Weft's whole test suite: installs what the tests need (Debian packages,
# Go tools), checks formatting and lint, then runs every test.
#
# Usage: ./scripts/test.sh [go test flags...]
#   WEFT_TEST_SKIP_INSTALL=1  do not install anything (you have it already)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# Debian packages the tests use: curl as a real client, iproute2 and iptables
# for transparent-capture tests; containerd, runc, the CNI plugins, conntrack,
# socat and kubectl for the single-node Kubernetes cluster (test/kube/cluster).
# (bench/setup.sh below installs the benchmark peers nginx and HAProxy and
# builds Caddy.)
need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl ca-certificates)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need_pkgs+=(iproute2)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need_pkgs+=(iptables)
command -v containerd >/dev/null || need_pkgs+=(containerd)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
command -v conntrack >/dev/null || [ -x /usr/sbin/conntrack ] || need_pkgs+=(conntrack)
command -v socat >/dev/null || need_pkgs+=(socat)
command -v kubectl >/dev/null || need_pkgs+=(kubectl)
if [ "${#need_pkgs[@]}" -gt 0 ] && [ -z "${WEFT_TEST_SKIP_INSTALL:-}" ]; then
	log "installing Debian packages: ${need_pkgs[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if [ -z "${WEFT_TEST_SKIP_INSTALL:-}" ]; then
	log "benchmark peers (bench/setup.sh)"
	bash bench/setup.sh
fi

gobin="$(go env GOPATH)/bin"
export PATH="$PATH:$gobin"
if ! command -v staticcheck >/dev/null && [ -z "${WEFT_TEST_SKIP_INSTALL:-}" ]; then
	log "installing staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	printf 'not gofmt-formatted:\n%s\n' "$unformatted" >&2
	exit 1
fi
log "go vet"
go vet ./...
if command -v staticcheck >/dev/null; then
	log "staticcheck"
	staticcheck ./...
fi

# kube-apiserver and etcd for the tests against a real API server, and the
# other Kubernetes binaries, CoreDNS and pause for the single-node cluster of
# test/kube/cluster, built from Go modules under test/kube/tools and cached by
# version (about 15 minutes the first time, nothing afterwards).
log "Kubernetes binaries for the Kubernetes tests (test/kube/build.sh)"
WEFT_KUBE_BIN_DIR="$(test/kube/build.sh)"
export WEFT_KUBE_BIN_DIR

log "go test"
go test -count=1 -timeout 25m "$@" ./...
