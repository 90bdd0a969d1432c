#!/usr/bin/env bash
# Prints the folder of cubecl-spirv 0.11.3 (CubeCL's SPIR-V compiler, what Burn's `vulkan`
# backend runs) with gpu/patches/cubecl-spirv-0.11.3-implicit-shared-memory.patch applied, for
#
#   cargo build ... --features vulkan --config "patch.crates-io.cubecl-spirv.path=\"$(gpu/cubecl-spirv.sh)\""
#
# The bug: on a Vulkan device without VK_KHR_workgroup_memory_explicit_layout (Mesa's lavapipe,
# for one; NVIDIA's driver has it and takes the other path), `lower_shared_implicit` declares each
# shared-memory array as a Workgroup variable of *pointer* type and takes its address as the
# array type, the two types swapped: `%v = OpVariable %ptr_Workgroup_ptr_Workgroup_arr`. The
# Vulkan validation layer rejects the module ("OpInBoundsAccessChain reached non-composite type
# while indexes still remain to be traversed"), and lavapipe crashes creating the pipeline of
# every kernel with shared memory: Burn's own reductions (`shared_sum`) and our row kernels. The
# patch swaps them back, as `lower_shared_explicit` has them. Cargo rewrites Cargo.lock's
# cubecl-spirv entry (no registry source) while the patch is in use; restore it after.
#
# Environment: DEST (default ~/.cache/cubecl-spirv-0.11.3-patched).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DEST:-${XDG_CACHE_HOME:-$HOME/.cache}/cubecl-spirv-0.11.3-patched}
patch=$PWD/gpu/patches/cubecl-spirv-0.11.3-implicit-shared-memory.patch
if [[ ! -f $dest/.patched ]] || ! cmp -s "$patch" "$dest/.patched"; then
  cargo fetch --locked -q
  crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/cubecl-spirv-0.11.3.crate | head -1)
  rm -rf "$dest.partial"
  mkdir -p "$dest.partial"
  tar xzf "$crate" -C "$dest.partial" --strip-components 1
  patch -s -d "$dest.partial" -p1 <"$patch"
  cp "$patch" "$dest.partial/.patched"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
fi
echo "$dest"
