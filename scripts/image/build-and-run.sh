#!/usr/bin/env bash
# Builds the Dockerfile with buildah (no daemon: chroot isolation, vfs storage of its own) and runs the image:
# `sidekey check` on its config, `run` answering /readyz as its USER with a read-only root file system, no
# node_modules, compiler or test file in it, and its size. The base is pulled from its registry, or, when that
# cannot be reached, made from Debian and npm packages under the same name (make-base.sh), so the Dockerfile is
# the same either way. Every step is bounded in time; storage and containers are removed on exit.
#
#   sudo scripts/image/build-and-run.sh
#
# Needs root, buildah, and mmdebstrap when the base registry is unreachable (Debian packages buildah, mmdebstrap).
# Exit 0 passed, 1 sidekey's failure, 77 skipped because this machine cannot build or run images (see lib.sh).
# SIDEKEY_IMAGE_KEEP=1 keeps the storage (buildah --root DIR/storage --storage-driver vfs images).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"
started_all="$(date +%s%N)"

[ "$(id -u)" = 0 ] || skip "needs root (buildah with chroot isolation and vfs storage, no daemon): use sudo"
for tool in buildah:buildah unshare:util-linux chroot:coreutils ip:iproute2 curl:curl npm:npm; do
  command -v "${tool%%:*}" >/dev/null || skip "${tool%%:*} missing (Debian package ${tool#*:})"
done
unshare --mount --net --pid --ipc --uts --fork true 2>/dev/null \
  || skip "this machine cannot make mount, network and pid namespaces (an unprivileged container?)"

# vfs keeps a full copy of the file system per layer and container: about 1.5 GB at the peak.
free_mb="$(df -Pm "${SIDEKEY_IMAGE_WORKDIR:-/var/tmp}" | awk 'NR == 2 { print $4 }')"
[ "$free_mb" -ge 3000 ] || skip "${SIDEKEY_IMAGE_WORKDIR:-/var/tmp} has $free_mb MB free, under the 3000 MB needed"
SIDEKEY_IMAGE_WORK="$(mktemp -d "${SIDEKEY_IMAGE_WORKDIR:-/var/tmp}/sidekey-image.XXXXXX")"
export SIDEKEY_IMAGE_WORK
cleanup () {
  local status=$?
  bh rm --all >/dev/null 2>&1 || true
  if [ "${SIDEKEY_IMAGE_KEEP:-}" = 1 ]; then say "kept $SIDEKEY_IMAGE_WORK"; exit "$status"; fi
  # Never delete through a mount that is still there (a bind of this machine's files, say).
  if findmnt -rn -o TARGET | grep -q "^$SIDEKEY_IMAGE_WORK/"; then
    say "left $SIDEKEY_IMAGE_WORK: something is still mounted under it"
  else
    local started
    started="$(date +%s%N)"
    rm -rf --one-file-system "$SIDEKEY_IMAGE_WORK"
    say "removed the storage in $(since "$started") s"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
: >"$SIDEKEY_IMAGE_WORK/facts"
say "buildah $(buildah --version | awk '{ print $3 }'), storage $SIDEKEY_IMAGE_WORK (vfs)"

# ---- the base image(s) the Dockerfile's FROM lines name (not earlier stages) ----
mapfile -t bases < <(awk 'toupper($1) == "FROM" {
    for (i = 2; i <= NF; i++) if ($i !~ /^--/) { base = $i; break }
    if (!(base in stage)) print base
    if (toupper($(i + 1)) == "AS") stage[$(i + 2)] = 1
  }' "$repo/Dockerfile" | sort -u)
for base in "${bases[@]}"; do
  case "$base" in */*) full="$base" ;; *) full="docker.io/library/$base" ;; esac
  started="$(date +%s%N)"
  if within 120 pull --quiet --retry 1 "$full" >/dev/null 2>"$SIDEKEY_IMAGE_WORK/pull.err"; then
    fact "base: $base pulled from its registry in $(since "$started") s"
  else
    say "cannot pull $full: $(tail -n 1 "$SIDEKEY_IMAGE_WORK/pull.err")"
    "$here/make-base.sh" "$full"
    fact "base: $base made from Debian and npm packages (registry unreachable) in $(since "$started") s"
  fi
done

# ---- npm inside the build reaches the registry as npm here does: its registry and, if any, its CA bundle ----
# Lent as npm's global config dir (/usr/local/etc, empty in the base): a mount over a directory the base has leaves
# nothing in the image, where a file mounted anywhere else would leave an empty file behind as its mount point.
lent="$SIDEKEY_IMAGE_WORK/usr-local-etc"
mkdir -p "$lent"
printf 'registry=%s\n' "$(npm config get registry)" >"$lent/npmrc"
cafile="$(npm config get cafile)"
case "$cafile" in null | undefined) cafile="" ;; esac
cafile="${cafile:-${NODE_EXTRA_CA_CERTS:-}}"
if [ -z "$cafile" ] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cafile=/etc/ssl/certs/ca-certificates.crt
fi
if [ -n "$cafile" ]; then
  cp "$cafile" "$lent/ca-bundle.pem"
  printf 'cafile=/usr/local/etc/ca-bundle.pem\n' >>"$lent/npmrc"
  say "the build trusts this machine's CA bundle $cafile (lent read-only, not in the image)"
fi
mounts=(-v "$lent:/usr/local/etc:ro")
started="$(date +%s%N)"
probe="$(bh from --quiet "${bases[0]}")"
within 60 run "${mounts[@]}" "$probe" -- npm ping >/dev/null 2>"$SIDEKEY_IMAGE_WORK/ping.err" \
  || skip "a container here cannot reach $(npm config get registry): $(tail -n 1 "$SIDEKEY_IMAGE_WORK/ping.err")"
bh rm "$probe" >/dev/null
say "a container reaches the npm registry ($(since "$started") s)"

# ---- build ----
version="$(sed -nE 's/^  "version": "([^"]+)".*/\1/p' "$repo/package.json")"
tag="localhost/sidekey:$version"
started="$(date +%s%N)"
within 600 bud --pull=never --layers=false "${mounts[@]}" -f "$repo/Dockerfile" -t "$tag" "$repo" \
  || fail "buildah bud of the Dockerfile failed (status $?)"
fact "build: $tag built in $(since "$started") s"

# ---- check: the image's ENTRYPOINT with `check`, as the image's USER (buildah run applies it) ----
mapfile -t entrypoint < <(image_config "$tag" Entrypoint)
started="$(date +%s%N)"
ctr="$(bh from --quiet "$tag")"
who="$(within 60 run "$ctr" -- "${entrypoint[0]}" -p 'process.getuid() + ":" + process.getgid()')"
out="$(within 60 run "$ctr" -- "${entrypoint[@]}" check 2>&1)" || fail "sidekey check failed: $out"
fact "check: '${entrypoint[*]} check' as uid:gid $who: exit 0 in $(since "$started") s ($out)"

bh rm "$ctr" >/dev/null

"$here/check-contents.sh" "$tag"
size="$(bh images --format '{{.Size}}' "$tag")"
fact "size: $tag $size (base ${bases[*]}: $(bh images --format '{{.Size}}' "${bases[0]}"))"

# ---- run ----
started="$(date +%s%N)"
"$here/run-readonly.sh" "$tag"
fact "run: done in $(since "$started") s"
fact "total: $(since "$started_all") s"

printf '\n[image] ==== the image, built and run ====\n'
sed 's/^/[image]   /' "$SIDEKEY_IMAGE_WORK/facts"
