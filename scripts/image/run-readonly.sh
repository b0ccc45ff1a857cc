#!/usr/bin/env bash
# Runs an image as Kubernetes' readOnlyRootFilesystem and `docker run --read-only` would: its root file system
# mounted read-only, its USER, ENV, WORKDIR, ENTRYPOINT and CMD, an empty writable tmpfs on each VOLUME (owned as
# the image's directory is), nothing else writable (not /tmp), in its own mount, network, pid, ipc and uts
# namespaces. buildah run has no read-only root, so this is unshare and chroot over `buildah mount`.
# Then: /readyz answers 200, the process runs as the image's user with no capabilities, writes to / and /tmp fail
# with EROFS, and it stops on SIGTERM.
#
#   run-readonly.sh IMAGE      (run by build-and-run.sh: uses its storage, SIDEKEY_IMAGE_WORK)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The admin listener of the image's default config (config/examples/container.yaml), inside the container's netns.
readyz=http://127.0.0.1:4751/readyz

# The container's file system: what fails here is this machine's (no mount or tmpfs in a namespace), not the image's.
prepare () {
  local root="$1" volume dev
  mount --bind "$root" "$root" && mount -t proc proc "$root/proc" \
    && mount -t tmpfs -o mode=0755,size=1m tmpfs "$root/dev" || return 1
  for dev in null zero full random urandom; do
    touch "$root/dev/$dev" && mount --bind "/dev/$dev" "$root/dev/$dev" || return 1
  done
  for volume in $RO_VOLUMES; do
    mount -t tmpfs -o "size=16m,mode=$(stat -c %a "$root$volume"),uid=$(stat -c %u "$root$volume"),gid=$(stat -c %g \
      "$root$volume")" tmpfs "$root$volume" || return 1
  done
  mount -o remount,bind,ro "$root" && ip link set lo up && hostname sidekey-image-test
}

inside () {
  local root="$RO_ROOT" uid="${RO_USER%%:*}" gid="${RO_USER#*:}" log="$SIDEKEY_IMAGE_WORK/readonly-run.log"
  prepare "$root" || skip "cannot mount the container's file systems in a new mount namespace here"

  # env -i: the container sees the image's ENV and HOSTNAME only, as under a container engine.
  chroot --userspec="$uid:$gid" "$root" /usr/bin/env -i -C "$RO_WORKDIR" HOSTNAME=sidekey-image-test "$@" \
    >"$log" 2>&1 &
  # The pid in this pid namespace: read it in the proc mounted inside it.
  local pid=$! code=000 tries=0
  until [ "$code" = 200 ] || [ "$tries" -ge 150 ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; fail "the container exited before /readyz answered"; }
    code="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$readyz" || true)"
    tries=$((tries + 1))
    [ "$code" = 200 ] || sleep 0.2
  done
  [ "$code" = 200 ] || { tail -n 20 "$log" >&2; fail "/readyz answered $code, not 200, after $tries tries"; }
  fact "run: ${*: -$RO_ARGC} -> /readyz 200 after $tries tries"

  local ids caps
  ids="$(awk '/^Uid:/ { u = $2 "/" $3 "/" $4 "/" $5 } /^Gid:/ { g = $2 "/" $3 "/" $4 "/" $5 } END { print u " " g }' \
    "$root/proc/$pid/status")"
  caps="$(awk '/^CapEff:/ { print $2 }' "$root/proc/$pid/status")"
  [ "$ids" = "$uid/$uid/$uid/$uid $gid/$gid/$gid/$gid" ] || fail "the process runs as uid/gid $ids, not $RO_USER"
  [ "$caps" = 0000000000000000 ] || fail "the process has capabilities $caps"
  fact "run: process uid $uid gid $gid (real/effective/saved/fs), no effective capabilities"

  local options
  options="$(awk -v r="$root" '$5 == r { print $6 }' /proc/self/mountinfo | tail -n 1)"
  case ",$options," in *,ro,*) ;; *) fail "the root file system is mounted $options, not read-only" ;; esac
  for path in /app/dist/cli.js /tmp/probe /probe; do
    # As root: refused by the read-only mount, not by file permissions.
    if out="$(touch "$root$path" 2>&1)"; then fail "$path is writable"; fi
    case "$out" in *'Read-only file system'*) ;; *) fail "writing $path failed otherwise: $out" ;; esac
  done
  fact "run: root file system mounted read-only ($options); writing /, /tmp, /app/dist/cli.js: EROFS"
  for volume in $RO_VOLUMES; do
    fact "run: VOLUME $volume (tmpfs) now holds: $(ls -A "$root$volume" | tr '\n' ' ')"
  done

  kill -TERM "$pid"
  tries=0
  while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
  kill -0 "$pid" 2>/dev/null && fail "the process was still running 10 s after SIGTERM"
  local status=0
  wait "$pid" || status=$?
  [ "$status" = 0 ] || { tail -n 20 "$log" >&2; fail "exit status $status after SIGTERM"; }
  fact "run: stopped on SIGTERM with exit status 0"
}

if [ "${1:-}" = --inside ]; then shift; inside "$@"; exit 0; fi

image="$1"
ctr="$(bh from --quiet "$image")"
RO_ROOT="$(bh mount "$ctr")"
RO_USER="$(bh inspect --type image --format '{{.OCIv1.Config.User}}' "$image")"
RO_WORKDIR="$(bh inspect --type image --format '{{.OCIv1.Config.WorkingDir}}' "$image")"
RO_VOLUMES="$(bh inspect --type image --format '{{range $k, $v := .OCIv1.Config.Volumes}}{{$k}} {{end}}' "$image")"
export RO_ROOT RO_USER="${RO_USER:-0:0}" RO_WORKDIR="${RO_WORKDIR:-/}" RO_VOLUMES
case "$RO_USER" in *:*) ;; *) RO_USER="$RO_USER:$RO_USER" ;; esac
# A name would be looked up in this machine's /etc/passwd by chroot, not the image's.
[[ "$RO_USER" =~ ^[0-9]+:[0-9]+$ ]] || fail "USER $RO_USER is not numeric uid:gid"
[ "${RO_USER%%:*}" != 0 ] || fail "the image runs as root (USER $RO_USER)"
mapfile -t env < <(image_config "$image" Env)
mapfile -t argv < <(image_config "$image" Entrypoint; image_config "$image" Cmd)
export RO_ARGC="${#argv[@]}"
status=0
timeout 120 unshare --mount --net --pid --ipc --uts --fork --kill-child -- "$0" --inside "${env[@]}" "${argv[@]}" \
  || status=$?
bh umount "$ctr" >/dev/null
bh rm "$ctr" >/dev/null
[ "$status" = 124 ] && fail "the read-only run did not finish in 120 s"
exit "$status"
