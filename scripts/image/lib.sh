# Shared by the scripts in scripts/image/ (sourced, not run).
#
# Exit codes: 0 passed; 1 sidekey's failure (the Dockerfile, the build, the image at run time); 77 skipped, when
# this machine cannot build or run images at all (no root, no namespaces, no buildah, no route to a mirror).
# .ci/run fails on 1 and reports 77 as skipped.

SKIP=77

say () { printf '[image] %s\n' "$*"; }
# A fact goes to the log now and into the summary build-and-run.sh prints at the end.
fact () { printf '[image] FACT %s\n' "$*"; printf '%s\n' "$*" >>"$SIDEKEY_IMAGE_WORK/facts"; }
skip () { printf '[image] SKIPPED: %s\n' "$*" >&2; exit "$SKIP"; }
fail () { printf '[image] FAILED: %s\n' "$*" >&2; exit 1; }

# Elapsed seconds, one decimal, since the epoch nanoseconds in $1.
since () { awk -v s="$1" -v e="$(date +%s%N)" 'BEGIN { printf "%.1f", (e - s) / 1e9 }'; }

# buildah with storage of our own (vfs: no overlay module or fuse needed), so a run leaves nothing behind in the
# machine's image store and removing one directory cleans up. SIDEKEY_IMAGE_WORK is set by build-and-run.sh.
# within SECONDS ARGS... is the same under a time limit; bh has none (timeout 0).
bh () { within 0 "$@"; }
within () {
  local seconds="$1"
  shift
  timeout "$seconds" buildah --root "$SIDEKEY_IMAGE_WORK/storage" --runroot "$SIDEKEY_IMAGE_WORK/runroot" \
    --storage-driver vfs "$@"
}
export BUILDAH_ISOLATION=chroot

# One line of an image's config, as a Go template over buildah inspect's OCIv1 field.
image_config () { bh inspect --type image --format "{{range .OCIv1.Config.$2}}{{.}}{{\"\\n\"}}{{end}}" "$1"; }
