#!/usr/bin/env bash
# Fetches Debian's current amd64 kernel (the package linux-image-amd64
# depends on, e.g. linux-image-6.1.0-56-amd64) with apt-get download and
# extracts it into DIR, keeping only what the IPVS test VM needs: boot/
# (vmlinuz) and the network, library and crypto modules. Run as root on
# Debian; make test-ipvs caches the result under bin/ipvsvm/kernel.
set -euo pipefail
dir=${1:?usage: fetch-kernel.sh DIR}

image() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(image)
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(image)
fi
[ -n "$pkg" ] || { echo "fetch-kernel: no linux-image-amd64 in the package lists" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt-get download drops privileges to _apt where it can
(cd "$tmp" && apt-get download -q "$pkg")
rm -rf "$dir"
mkdir -p "$dir"
dpkg-deb -x "$tmp"/*.deb "$dir"
rm -rf "$dir/usr"
for m in "$dir"/lib/modules/*/kernel; do
  find "$m" -mindepth 1 -maxdepth 1 ! -name net ! -name lib ! -name crypto ! -name drivers -exec rm -rf {} +
  find "$m/drivers" -mindepth 1 -maxdepth 1 ! -name net -exec rm -rf {} +
done
echo "$pkg" > "$dir/.extracted"
echo "fetch-kernel: $pkg in $dir ($(du -sh "$dir" | cut -f1))"
