#!/usr/bin/env bash
# Writes one file of a PyPI wheel to DEST (pip downloads the wheel and checks it against PyPI's
# hash; nothing is installed):
#
#   gpu/wheel-file.sh REQUIREMENT SUFFIX MAGIC DEST
#
# REQUIREMENT as pip takes it (nvidia-cuda-nvcc==13.0.88), SUFFIX the end of the file's path in
# the wheel, MAGIC its first bytes in hex (the file is refused otherwise). For gpu/libdevice.sh
# and gpu/ptxas.sh: NVIDIA's CUDA tools come as manylinux wheels, whatever this machine is.
set -euo pipefail
[[ $# == 4 ]] || { echo "usage: $0 REQUIREMENT SUFFIX MAGIC DEST" >&2; exit 2; }
requirement=$1 suffix=$2 magic=$3 dest=$4
py=${PYTHON:-python3}
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps --no-cache-dir --only-binary=:all: \
  --platform manylinux2014_x86_64 -d "$tmp" "$requirement" >&2
"$py" - "$tmp"/*.whl "$suffix" "$magic" "$dest.tmp" <<'PY'
import sys, zipfile
wheel, suffix, magic, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next((n for n in z.namelist() if n.endswith(suffix)), None)
    if member is None:
        sys.exit(f"{wheel}: no file ending in {suffix}")
    data = z.read(member)
if not data.startswith(bytes.fromhex(magic)):
    sys.exit(f"{member} does not start with {magic}")
with open(dest, "wb") as f:
    f.write(data)
PY
mv "$dest.tmp" "$dest"
