#!/usr/bin/env bash
# Builds an upstream Kubernetes command (kube-apiserver or kube-proxy) from
# the Go module proxy into $2 (default bin/k8s), once: an existing binary of
# the right version is kept. Each command has its own module under
# hack/tools/<command>, pinned to the version below.
set -euo pipefail
version=v1.37.2
cmd=${1:?usage: build-k8s.sh kube-apiserver|kube-proxy [outdir]}
out=${2:-bin/k8s}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -x "$out/$cmd" ] && [ "$(cat "$out/$cmd.version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
echo "building $cmd $version into $out (takes 5 to 10 minutes on 2 cores, once)" >&2
minor=${version#v1.}; minor=${minor%%.*}
cd "$root/hack/tools/$cmd"
CGO_ENABLED=0 go build -trimpath -o "$out/$cmd.tmp" -ldflags "-s -w \
  -X k8s.io/component-base/version.gitVersion=$version \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/component-base/version.gitTreeState=clean" .
mv "$out/$cmd.tmp" "$out/$cmd"
echo "$version" > "$out/$cmd.version"
