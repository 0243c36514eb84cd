#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy into $1 (default bin/k8s),
# once: an existing binary of the right version is kept.
set -euo pipefail
version=v1.37.2
out=${1:-bin/k8s}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -x "$out/kube-apiserver" ] && [ "$(cat "$out/kube-apiserver.version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
echo "building kube-apiserver $version into $out (takes about 10 minutes on 2 cores, once)" >&2
minor=${version#v1.}; minor=${minor%%.*}
cd "$root/hack/tools/kube-apiserver"
CGO_ENABLED=0 go build -trimpath -o "$out/kube-apiserver.tmp" -ldflags "-s -w \
  -X k8s.io/component-base/version.gitVersion=$version \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/component-base/version.gitTreeState=clean" .
mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
echo "$version" > "$out/kube-apiserver.version"
