#!/usr/bin/env bash
# hack/lan-kubeconfig.sh [-n NAMESPACE] [-s SERVICEACCOUNT] [-d DURATION] > kubeconfig
#
# Prints a kubeconfig for lbprobe running outside the cluster (deploy/systemd): the API server and
# CA of kubectl's current context, and a token of lbprobe's read-only ServiceAccount
# (deploy/kustomize/overlays/lan-host, or any install of the manifests or the chart), requested
# with `kubectl create token` (default lifetime one year; the API server may cap it). Renew it
# before it expires: lbprobe's Kubernetes series go stale and LBProbeKubernetesNotSynced fires.
# KUBECTL names the kubectl to use (default: kubectl on PATH).
set -euo pipefail
ns=lbprobe
sa=lbprobe
duration=8760h
kubectl=${KUBECTL:-kubectl}
usage() { sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 2; }
while getopts n:s:d:h opt; do
  case $opt in
    n) ns=$OPTARG ;;
    s) sa=$OPTARG ;;
    d) duration=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage

view() { "$kubectl" config view --minify --raw -o jsonpath="{.clusters[0].cluster.$1}"; }
server=$(view server)
[ -n "$server" ] || { echo "lan-kubeconfig.sh: kubectl's current context has no server" >&2; exit 1; }
ca=$(view certificate-authority-data)
if [ -z "$ca" ]; then
  ca_file=$(view certificate-authority)
  [ -n "$ca_file" ] || { echo "lan-kubeconfig.sh: kubectl's current context has no CA" >&2; exit 1; }
  ca=$(base64 -w0 <"$ca_file")
fi
tls_server_name=$(view tls-server-name)
token=$("$kubectl" -n "$ns" create token "$sa" --duration="$duration")

cat <<KUBECONFIG
# lbprobe's read-only kubeconfig: ServiceAccount $ns/$sa, written by hack/lan-kubeconfig.sh.
apiVersion: v1
kind: Config
clusters:
  - name: cluster
    cluster:
      server: $server
      certificate-authority-data: $ca${tls_server_name:+
      tls-server-name: $tls_server_name}
users:
  - name: $sa
    user:
      token: $token
contexts:
  - name: lbprobe
    context:
      cluster: cluster
      user: $sa
current-context: lbprobe
KUBECONFIG
