#!/usr/bin/env bash
# hack/crds.sh prometheus-operator: print the folder holding the ServiceMonitor, PodMonitor and
# PrometheusRule CRDs (monitoring.coreos.com/v1), generating them first if they are not cached.
#
# They are generated the way prometheus-operator generates its own: controller-gen (pinned in
# versions.env, built by hack/tool.sh) over the API types of
# github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring at
# PROMETHEUS_OPERATOR_VERSION, a module the Go module proxy serves (the operator's root module,
# which ships the CRD files, is not). Cached next to the tools, keyed by both versions.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/versions.env
. "$root/hack/tools/versions.env"
cache=${LBPROBE_TOOLS_CACHE:-$HOME/.cache/lbprobe/tools}

[ "${1:-}" = prometheus-operator ] || { echo "usage: hack/crds.sh prometheus-operator" >&2; exit 2; }
module=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
dir=$cache/crds-prometheus-operator-$PROMETHEUS_OPERATOR_VERSION-controller-gen-$CONTROLLER_GEN_VERSION
if [ -d "$dir" ]; then
  echo "$dir"
  exit 0
fi

cg=$("$root/hack/tool.sh" controller-gen)
src=$(cd "$root" && GOWORK=off GOFLAGS= go mod download -json "$module@$PROMETHEUS_OPERATOR_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "crds.sh: go mod download $module@$PROMETHEUS_OPERATOR_VERSION gave no folder" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.crds.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "crds.sh: generating the prometheus-operator CRDs with controller-gen from $module@$PROMETHEUS_OPERATOR_VERSION" >&2
(cd "$src" && GOWORK=off GOFLAGS= "$cg" crd:crdVersions=v1 paths=./v1/... output:crd:dir="$tmp/all" >&2)
mkdir "$tmp/crds"
for kind in servicemonitors podmonitors prometheusrules; do
  cp "$tmp/all/monitoring.coreos.com_$kind.yaml" "$tmp/crds/"
done
# Renamed into place only when complete; a concurrent run that won the race leaves its copy.
mv -T "$tmp/crds" "$dir" 2>/dev/null || [ -d "$dir" ]
echo "$dir"
