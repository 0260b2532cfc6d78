#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver + etcd, and kubectl) from the Go module proxy, because
# setup-envtest's downloads are unreachable here. Binaries are cached in bin/envtest/<key>/ and
# never rebuilt when present. Prints the directory to use as KUBEBUILDER_ASSETS.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
k8s_version="$(awk '/^require k8s.io\/kubernetes/ {print $3}' "$root/hack/tools/kube/go.mod")"
etcd_version="$(awk '/^require go.etcd.io\/etcd\/server\/v3/ {print $3}' "$root/hack/tools/etcd/go.mod")"
dir="$root/bin/envtest/k8s-${k8s_version}-etcd-${etcd_version}"
mkdir -p "$dir"

if [[ ! -x "$dir/kube-apiserver" ]]; then
	echo "building kube-apiserver ${k8s_version} (first time only, ~6 min on 2 cores)" >&2
	ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version}"
	ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${k8s_version}"
	(cd "$root/hack/tools/kube" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
		-o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
	mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
fi

if [[ ! -x "$dir/kubectl" ]]; then
	# envtest starts no kubectl; the schema test runs `kubectl explain` against the API server.
	echo "building kubectl ${k8s_version}" >&2
	ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version}"
	ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${k8s_version}"
	(cd "$root/hack/tools/kube" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
		-o "$dir/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
	mv "$dir/kubectl.tmp" "$dir/kubectl"
fi

if [[ ! -x "$dir/etcd" ]]; then
	echo "building etcd ${etcd_version}" >&2
	(cd "$root/hack/tools/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
		-o "$dir/etcd.tmp" go.etcd.io/etcd/server/v3)
	mv "$dir/etcd.tmp" "$dir/etcd"
fi

echo "$dir"
