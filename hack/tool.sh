#!/usr/bin/env bash
# hack/tool.sh NAME             print the absolute path of tool binary NAME, building it first if
#                               it is not cached yet (build output goes to stderr)
# hack/tool.sh --all            build every tool; prints every binary's path
# hack/tool.sh --list           list the tool names
# hack/tool.sh --update-modules regenerate go.mod/go.sum of the tools modules under hack/tools/
#                               from hack/tools/versions.env (after a version bump)
#
# Binaries live in ${LBPROBE_TOOLS_CACHE:-$HOME/.cache/lbprobe/tools}/<group>-<version>/, outside
# the clone, so every clone, `make` run and CI run on a machine shares them. A group is built in a
# temporary folder and renamed into place only when every binary in it runs, so an interrupted
# build leaves nothing half-done behind; a lock per group makes concurrent calls wait for one build.
# shellcheck disable=SC2317 # build_<group> functions are called as "build_$g"
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/hack/tools
# shellcheck source=tools/versions.env
. "$tools/versions.env"
cache=${LBPROBE_TOOLS_CACHE:-$HOME/.cache/lbprobe/tools}

groups="staticcheck prometheus jsonnet kube k8s_gateway helm controller-gen"

die() { echo "tool.sh: $*" >&2; exit 1; }

group_of() {
  case $1 in
    staticcheck) echo staticcheck ;;
    prometheus | promtool) echo prometheus ;;
    jsonnet | jsonnetfmt) echo jsonnet ;;
    kube-apiserver | kubectl | etcd) echo kube ;;
    k8s_gateway) echo k8s_gateway ;;
    helm) echo helm ;;
    controller-gen) echo controller-gen ;;
    *) return 1 ;;
  esac
}

binaries_of() {
  case $1 in
    prometheus) echo prometheus promtool ;;
    jsonnet) echo jsonnet jsonnetfmt ;;
    kube) echo kube-apiserver kubectl etcd ;;
    *) echo "$1" ;;
  esac
}

version_of() {
  case $1 in
    staticcheck) echo "$STATICCHECK_VERSION" ;;
    prometheus) echo "$PROMETHEUS_VERSION${PROMETHEUS_BUILD_TAGS:+-${PROMETHEUS_BUILD_TAGS//,/-}}" ;;
    jsonnet) echo "$JSONNET_VERSION" ;;
    kube) echo "$KUBERNETES_VERSION-etcd-$ETCD_VERSION" ;;
    k8s_gateway) echo "$K8S_GATEWAY_VERSION" ;;
    helm) echo "$HELM_VERSION-k8s-$KUBERNETES_VERSION" ;;
    controller-gen) echo "$CONTROLLER_GEN_VERSION" ;;
  esac
}

# Cold build times (module download + compile, empty Go caches) measured on a shared 2-core machine.
estimate_of() {
  case $1 in
    kube) echo "~20 min" ;;
    prometheus) echo "~11 min" ;;
    helm | k8s_gateway) echo "~8 min" ;;
    staticcheck | controller-gen) echo "~2 min" ;;
    *) echo "~1 min" ;;
  esac
}

# How each binary is asked for its version: after a build, each must answer before it is cached.
version_cmd() {
  case $1 in
    kubectl) echo "version --client" ;;
    helm) echo "version --short" ;;
    staticcheck | k8s_gateway) echo "-version" ;;
    *) echo "--version" ;;
  esac
}

# Go settings for every build: no workspace, no toolchain switch, no cgo (static binaries; a
# machine with Go alone has no C compiler), the user's GOFLAGS not applied.
gobuild_env=(env GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=)

# go install pkg@version into a folder of ours (GOBIN only names the output folder).
install_at() { # out version ldflags tags pkg...
  local out=$1 ver=$2 ldflags=$3 tags=$4
  shift 4
  local pkg
  for pkg in "$@"; do
    GOBIN=$out "${gobuild_env[@]}" go install -trimpath -tags "$tags" -ldflags "$ldflags" "$pkg@$ver" >&2 || return
  done
}

# The version a tools module's go.mod pins for module $2, checked against versions.env.
check_pin() { # dir module want
  local got
  got=$(awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod")
  [ "$got" = "$3" ] || die "${1#"$root"/}/go.mod pins $2 ${got:-(none)} but versions.env says $3: run hack/tool.sh --update-modules"
}

check_pins() { # group
  case $1 in
    kube)
      check_pin "$tools/kube" k8s.io/kubernetes "$KUBERNETES_VERSION"
      check_pin "$tools/kube" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
      ;;
    k8s_gateway) check_pin "$tools/k8s_gateway" github.com/ori-edge/k8s_gateway "$K8S_GATEWAY_VERSION" ;;
  esac
}

build_staticcheck() {
  install_at "$1" "$STATICCHECK_VERSION" "-s -w" "" honnef.co/go/tools/cmd/staticcheck
}

build_prometheus() {
  local v=${PROMETHEUS_VERSION#v0.} mm # module v0.316.0 is Prometheus 3.16.0
  mm=${v%%.*}
  local pv=$((mm / 100)).$((mm % 100)).${v#*.}
  install_at "$1" "$PROMETHEUS_VERSION" \
    "-s -w -X github.com/prometheus/common/version.Version=$pv -X github.com/prometheus/common/version.Branch=HEAD" \
    "$PROMETHEUS_BUILD_TAGS" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
}

build_jsonnet() {
  install_at "$1" "$JSONNET_VERSION" "-s -w" "" \
    github.com/google/go-jsonnet/cmd/jsonnet github.com/google/go-jsonnet/cmd/jsonnetfmt
}

# Helm's release builds stamp the Kubernetes version that `helm template` and `helm lint` assume
# (else v1.20, older than the chart's kubeVersion): the one the tests run, KUBERNETES_VERSION.
build_helm() {
  local kv=${KUBERNETES_VERSION#v} major minor
  major=${kv%%.*}
  minor=${kv#*.}
  minor=${minor%%.*}
  local x=helm.sh/helm/v3/pkg
  install_at "$1" "$HELM_VERSION" "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X $x/chartutil.k8sVersionMajor=$major -X $x/chartutil.k8sVersionMinor=$minor \
-X $x/lint/rules.k8sVersionMajor=$major -X $x/lint/rules.k8sVersionMinor=$minor" "" \
    helm.sh/helm/v3/cmd/helm
}

build_controller-gen() {
  install_at "$1" "$CONTROLLER_GEN_VERSION" "-s -w" "" sigs.k8s.io/controller-tools/cmd/controller-gen
}

build_kube() {
  local dir=$tools/kube out=$1 kv=$KUBERNETES_VERSION
  local minor=${kv#v1.}
  minor=${minor%%.*}
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$dir" && "${gobuild_env[@]}" GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3) >&2 || return
  mv "$out/server" "$out/etcd" # the etcd main package is the module root, go.etcd.io/etcd/server/v3
}

build_k8s_gateway() {
  local dir=$tools/k8s_gateway
  (cd "$dir" && "${gobuild_env[@]}" GOFLAGS=-mod=readonly GONOSUMDB=github.com/ori-edge/k8s_gateway \
    go build -trimpath -ldflags "-s -w" -o "$1/k8s_gateway" github.com/ori-edge/k8s_gateway/cmd) >&2
}

tmp=
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

built() { # dir group
  local b
  for b in $(binaries_of "$2"); do [ -x "$1/$b" ] || return 1; done
}

ensure() { # group; prints nothing, leaves the group's binaries in $cache/<group>-<version>/
  local g=$1 ver final
  ver=$(version_of "$g")
  final=$cache/$g-$ver
  built "$final" "$g" && return 0
  check_pins "$g"
  mkdir -p "$cache"
  if command -v flock >/dev/null; then
    exec 9>"$cache/.$g.lock"
    flock -n 9 || { echo "tool.sh: waiting for a concurrent build of $g" >&2 && flock 9; }
    built "$final" "$g" && return 0 # built by whoever held the lock
    rm -rf "$cache/.tmp-$g-"*       # left by a killed build: nobody else builds $g now
  fi
  tmp=$(mktemp -d "$cache/.tmp-$g-XXXXXX")
  chmod 755 "$tmp"
  echo "building $g $ver (first time only, $(estimate_of "$g")) into $final" >&2
  local start=$SECONDS b out
  "build_$g" "$tmp" || die "building $g $ver failed"
  for b in $(binaries_of "$g"); do
    # shellcheck disable=SC2046
    out=$("$tmp/$b" $(version_cmd "$b") 2>&1) || die "$b $(version_cmd "$b") failed: $out"
    printf '%s\n' "$out" | head -n 3 | sed "s/^/  $b: /" >&2
  done
  if [ -e "$final" ] && ! built "$final" "$g"; then rm -rf "$final"; fi # incomplete, not ours
  if ! mv -T "$tmp" "$final" 2>/dev/null; then
    built "$final" "$g" || die "could not move $tmp to $final"
    rm -rf "$tmp" # a concurrent build (no flock here) finished first
  fi
  tmp=
  echo "built $g $ver in $((SECONDS - start)) s" >&2
  exec 9>&-
}

path_of() { # binary
  local g
  g=$(group_of "$1") || die "unknown tool '$1' (known: $(for x in $groups; do binaries_of "$x"; done | xargs))"
  ensure "$g"
  echo "$cache/$g-$(version_of "$g")/$1"
}

update_modules() {
  local d=$tools/kube sv=v0.${KUBERNETES_VERSION#v1.} gomod
  export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod
  echo "regenerating $d for kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION" >&2
  (
    cd "$d"
    rm -f go.mod go.sum
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
    [ -f "$gomod" ] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"
    {
      printf '// Builds kube-apiserver, kubectl and etcd for hack/tool.sh.\n'
      printf '// Generated by hack/tool.sh --update-modules from hack/tools/versions.env: do not edit.\n'
      printf 'module github.com/lbprobe/lbprobe/hack/tools/kube\n\ngo 1.26.0\n\n'
      # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with folders
      # that its module zip lacks: point each at its published version instead.
      printf 'replace (\n'
      awk -v v="$sv" '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { printf "\t%s => %s %s\n", $1, $1, v }' "$gomod"
      printf ')\n'
    } >go.mod
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
      "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go mod tidy
  ) >&2
  d=$tools/k8s_gateway
  echo "regenerating $d for k8s_gateway $K8S_GATEWAY_VERSION" >&2
  (
    cd "$d"
    rm -f go.mod go.sum
    export GONOSUMDB=github.com/ori-edge/k8s_gateway
    {
      printf '// Builds k8s_gateway (CoreDNS with the k8s_gateway plugin) for hack/tool.sh.\n'
      printf '// Generated by hack/tool.sh --update-modules from hack/tools/versions.env: do not edit.\n'
      printf 'module github.com/lbprobe/lbprobe/hack/tools/k8s_gateway\n\ngo 1.26.0\n'
    } >go.mod
    go get -tool "github.com/ori-edge/k8s_gateway/cmd@$K8S_GATEWAY_VERSION"
    # No `go mod tidy`: it also loads files for old Go versions, one of which imports
    # inet.af/netaddr, whose zip the module proxy refuses; the build itself never needs it.
  ) >&2
}

main() {
  case ${1:-} in
    "" | -h | --help) sed -n '2,8s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    --list) for g in $groups; do binaries_of "$g"; done | tr ' ' '\n' ;;
    --all)
      for g in $groups; do
        for b in $(binaries_of "$g"); do path_of "$b"; done
      done
      ;;
    --update-modules) update_modules ;;
    -*) die "unknown option $1" ;;
    *) path_of "$1" ;;
  esac
}

main "$@"; exit # one line, read before main runs: editing this file mid-build is safe
