#!/usr/bin/env bash
# Installs what the benchmark's peers need and is idempotent:
#   - nginx-light, its stream module (libnginx-mod-stream, for the TCP scenario) and haproxy
#     from Debian (apt-get, as root or with sudo),
#   - Caddy built from bench/tools/caddy (its own Go module) into the cache directory the
#     harness reads: $WEFTBENCH_CADDY, else ${XDG_CACHE_HOME:-$HOME/.cache}/weft-bench/caddy-<version>.
# Set WEFTBENCH_SKIP_CADDY=1 to skip the Caddy build (the benchmark then reports Caddy as not run).
set -euo pipefail
cd "$(dirname "$0")"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

need=()
have nginx || need+=(nginx-light)
have haproxy || need+=(haproxy)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
if [ "${#need[@]}" -gt 0 ]; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
	# Keep the packages' init scripts from starting system-wide nginx/haproxy services: the
	# harness starts its own processes, and a failing service start would fail the install.
	policy=/usr/sbin/policy-rc.d
	added_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod +x "$policy"
		added_policy=1
	fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
	if [ -n "$added_policy" ]; then $sudo rm -f "$policy"; fi
fi

if [ "${WEFTBENCH_SKIP_CADDY:-}" != "1" ]; then
	version="$(grep -oE 'github.com/caddyserver/caddy/v2 v[0-9.]+' tools/caddy/go.mod | head -1 | cut -d' ' -f2)"
	caddy="${WEFTBENCH_CADDY:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-bench/caddy-$version}"
	if [ ! -x "$caddy" ]; then
		mkdir -p "$(dirname "$caddy")"
		(cd tools/caddy && go build -trimpath -o "$caddy.tmp" . && mv "$caddy.tmp" "$caddy")
	fi
	echo "caddy: $caddy"
fi
echo "nginx: $(command -v nginx || echo /usr/sbin/nginx), haproxy: $(command -v haproxy || echo /usr/sbin/haproxy)"
