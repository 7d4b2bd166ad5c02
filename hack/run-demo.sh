#!/usr/bin/env bash
# Starts the loopback demo peers and lbprobe on examples/static.yml; Ctrl-C
# stops both. Used by `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
ready=$(mktemp -u "${TMPDIR:-/tmp}/lbprobe-demo.XXXXXX")
bin/demotargets -ready-file "$ready" &
demo=$!
trap 'kill "$demo" 2>/dev/null; rm -f "$ready"' EXIT
for _ in $(seq 100); do
  [ -e "$ready" ] && break
  kill -0 "$demo" 2>/dev/null || { echo "demotargets failed to start" >&2; exit 1; }
  sleep 0.05
done
addr=${LBPROBE_LISTEN:-127.0.0.1:9884}
echo "lbprobe on http://$addr/  —  try: curl -s http://$addr/metrics | grep -E '^(loadbalancer|gateway)_'"
bin/lbprobe --kube.enabled=false --config.file examples/static.yml --web.listen-address "$addr" "$@"
