#!/usr/bin/env bash
# What the image must not hold: node_modules (dist/ is self-contained), a compiler (TypeScript, esbuild, a C
# toolchain), a test or source file, npm, npx or corepack, or anything the build was lent (its npmrc and CA bundle,
# mounted read-only at /usr/local/etc while the build ran). Prints what /app holds.
#
#   check-contents.sh IMAGE      (run by build-and-run.sh: uses its storage, SIDEKEY_IMAGE_WORK)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ctr="$(bh from --quiet "$1")"
root="$(bh mount "$ctr")"
refuse () { # what the image must not hold, named by find arguments
  local found
  found="$(find "$root" -xdev "${@:2}" | sed "s#^$root##")"
  [ -z "$found" ] || fail "$1 in the image: $(printf '%s\n' "$found" | head -n 5 | tr '\n' ' ')"
}
refuse node_modules -name node_modules
# TypeScript or esbuild as a package or a program anywhere; a C compiler's driver on PATH, or its cc1 anywhere.
refuse 'a compiler' \( -type d \( -name typescript -o -name esbuild \) \
  -o ! -type d \( -name tsc -o -name tsserver -o -name esbuild -o -name 'cc1*' \) \
  -o -path "$root/usr/*bin/*" \( -name 'gcc*' -o -name cc -o -name 'c++' -o -name 'g++*' -o -name 'clang*' \) \)
refuse 'a test or source file' \( -name '*.test.*' -o -name '*.spec.*' -o -name .tap -o -name tap \
  -o -path "$root/app/*" \( -name '*.ts' ! -name '*.d.ts' -o -name test -o -name src \) \)
# Source maps stay (stack traces name src/ lines) but carry no source (scripts/bundle.mjs: sourcesContent false).
refuse 'a source map with the source in it' -name '*.map' -exec grep -q '"sourcesContent"' {} \; -print
refuse 'npm, npx or corepack' -path "$root/usr/local/bin/*" \( -name npm -o -name npx -o -name corepack \)
refuse 'a file the build was lent' \( -path "$root/usr/local/etc/*" -o -path "$root/root/.npm*" \)
fact "contents: no node_modules, compiler (tsc, esbuild, gcc, cc1), test or source file, npm, npx or corepack," \
  "nothing left of the build's npmrc or CA; /app holds: $(cd "$root/app" && du -sh -- * | awk '{ print $2, $1 }' \
  | paste -sd ' ' | sed 's/ \([^ ]*\) / \1, /g')"
bh umount "$ctr" >/dev/null
bh rm "$ctr" >/dev/null
