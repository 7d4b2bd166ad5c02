#!/usr/bin/env bash
# Smoke test of the kube tools: etcd + kube-apiserver on 127.0.0.1, wait for /readyz,
# `kubectl get ns`, stop both and remove everything. To be replaced by the Go test harness.
set -euo pipefail

tool=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tool.sh
etcd=$("$tool" etcd)
apiserver=$("$tool" kube-apiserver)
kubectl=$("$tool" kubectl)

dir=$(mktemp -d)
pids=()
cleanup() { # the API server first: without etcd it retries for minutes before it exits
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if kill "${pids[i]}" 2>/dev/null; then wait "${pids[i]}" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}
trap cleanup EXIT

port() { echo $((20000 + RANDOM % 20000)); }
etcd_port=$(port) peer_port=$(port) api_port=$(port)
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"
if command -v openssl >/dev/null; then
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
else
  cat >"$dir/key.go" <<'EOF'
package main

import ("crypto/rand"; "crypto/rsa"; "crypto/x509"; "encoding/pem"; "os")

func main() {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	pem.Encode(os.Stdout, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}
EOF
  (cd "$dir" && GOWORK=off GOFLAGS='' go run key.go >sa.key)
fi

"$etcd" --name smoke --data-dir "$dir/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "smoke=http://127.0.0.1:$peer_port" >"$dir/etcd.log" 2>&1 &
pids+=($!)

start=$SECONDS
"$apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$dir/certs" \
  --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.key" \
  --service-account-signing-key-file "$dir/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none >"$dir/apiserver.log" 2>&1 &
pids+=($!)

until [ -f "$dir/certs/apiserver.crt" ]; do sleep 0.2; done
cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: smoke, cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$dir/certs/apiserver.crt"}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: smoke, context: {cluster: smoke, user: admin}}]
current-context: smoke
EOF
export KUBECONFIG=$dir/kubeconfig

until "$kubectl" get --raw /readyz >/dev/null 2>&1; do
  if ((SECONDS - start > 60)) || ! kill -0 "${pids[1]}" 2>/dev/null; then
    echo "smoke-kube: kube-apiserver not ready; its log ends:" >&2
    tail -n 20 "$dir/apiserver.log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "kube-apiserver ready after $((SECONDS - start)) s"
"$kubectl" version
"$kubectl" get ns
echo "smoke-kube: ok"
