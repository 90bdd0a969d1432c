#!/usr/bin/env bash
# Checks that every crate under third_party/ is its crates.io release with its .patch applied,
# and nothing else: the release is downloaded (or taken from Cargo's cache), its SHA-256 checked
# against the one below (Cargo.lock's before the patch), unpacked, patched, and compared file by
# file. CI runs it; a crate edited without its patch, or a patch that no longer applies, fails.
set -euo pipefail
cd "$(dirname "$0")"
declare -A sha256=(
  [cubecl-common-0.11.3]=0d0cf12d9bd1ba40cae471d3963f42c50c2c8df699b04ab83a7c2cbb8923800e
  [cubecl-cpu-0.11.3]=bc94511e64bad24a5d739f2c784d8268a6515fffde750236b02bb16387a77315
  [cubecl-llvm-0.11.3]=e4bcafc125b359e57492eecf2a1063756fa10f90782d1b243ac3af40e49747b6
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for dir in */; do
  crate=${dir%/}
  [[ -n ${sha256[$crate]:-} ]] || { echo "third_party/$crate: no checksum in check.sh" >&2; exit 1; }
  file=$tmp/$crate.crate
  cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate.crate" 2>/dev/null | head -1 || true)
  if [[ -n $cached ]]; then
    cp "$cached" "$file"
  else
    curl -sSfL -o "$file" "https://static.crates.io/crates/${crate%-*}/$crate.crate"
  fi
  echo "${sha256[$crate]}  $file" | sha256sum -c --quiet
  tar xzf "$file" -C "$tmp"
  patch -s -d "$tmp/$crate" -p1 <"$crate.patch"
  diff -r "$tmp/$crate" "$crate" || { echo "third_party/$crate differs from its release + $crate.patch" >&2; exit 1; }
  echo "third_party/$crate: the crates.io release + $crate.patch"
done
