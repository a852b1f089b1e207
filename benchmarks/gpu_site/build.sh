#!/usr/bin/env bash
# Build OUT/site.tar.xz: SGLang VERSION for the lent GPU machine's image (Python 3.12, torch 2.11.0+cu130), from
# benchmarks/gpu_site/wheels-VERSION.txt, the way ../shared/gpu/build_site.sh builds 0.5.11's (its strip_wheel.py
# drops FA3/FlashMLA and the sm100 build from sglang-kernel, and xgrammar's static library), so the suite can run
# at a version a recipe was moved to by `invoke upgrade`. Kept under the 64 MiB a device call carries (0.5.17:
# 58.6 MiB; zstandard, which only request decompression imports, and jedi, which IPython imports lazily, left out).
#     bash benchmarks/gpu_site/build.sh 0.5.17 .gpu17      (echo /.gpu17/ >> .git/info/exclude)
# On the GPU machine: tar -xJf .gpu17/site.tar.xz -C /tmp/site17; PYTHONPATH=/tmp/site17:$PWD
#     python3 -m infra.runtime.acceptance --shape tiny --recipe qwen3-8b-low-latency --json result.json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${1:?usage: build.sh VERSION OUT_DIR}
out=${2:?usage: build.sh VERSION OUT_DIR}
list="$here/wheels-$version.txt"
strip="$here/../../../shared/gpu/strip_wheel.py"
[ -f "$list" ] || { echo "no $list: list what SGLang $version needs that the GPU image lacks" >&2; exit 2; }
W=$(mktemp -d); S=$(mktemp -d)
TAGS="--only-binary=:all: --python-version 3.12 --implementation cp"
for n in 17 24 26 27 28 31 34 35 39; do TAGS="$TAGS --platform manylinux_2_${n}_x86_64"; done
TAGS="$TAGS --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
# shellcheck disable=SC2086  # TAGS is a list of options
grep -v '^#' "$list" | xargs python3 -m pip download -q --no-deps $TAGS -d "$W"
mkdir -p "$W/stripped"
python3 "$strip" "$W"/sglang_kernel-*.whl "$W/stripped" 'sgl_kernel/flash_ops.abi3.so' 'sgl_kernel/flashmla_ops.abi3.so' \
  'sgl_kernel/infllm_ops*' 'sgl_kernel/sm100/*' 'lib/*' 'lib64/*' 'include/*' '_mscclpp*'
python3 "$strip" "$W"/xgrammar-*.whl "$W/stripped" 'xgrammar/lib/*' 'xgrammar/include/*'
mv -f "$W"/stripped/*.whl "$W"/
python3 -m pip install -q --no-index --no-deps --no-compile $TAGS --target "$S" "$W"/*.whl
rm -rf "$S/bin"
mkdir -p "$out/lib"
tar -cf - -C "$S" . | xz -T0 -6 > "$out/site.tar.xz"
cp /lib/x86_64-linux-gnu/libnuma.so.1 "$out/lib/" 2>/dev/null || echo "no local libnuma.so.1 (apt-get install libnuma1)"
ls -la "$out/site.tar.xz"
rm -rf "$W" "$S"
