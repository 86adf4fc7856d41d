#!/usr/bin/env bash
# The GPU benchmark on a machine without network or Deno, over this checkout.
#
#   deno run -A bench/gpu/pack.ts          # here: builds .gpu-pack/ (≤ 60 MiB)
#   bench/gpu/run.sh [.gpu-pack] [bench:gpu flags…]   # there (the pack travels with `carry`)
#
# Unpacks Deno and the npm packages, installs the Vulkan loader where the
# image has none (dpkg -x into /, as root), points Vulkan at the NVIDIA
# driver's ICD when the loader does not find it, then runs `deno task doctor`
# and bench/gpu.ts offline. Results: bench/results/gpu-<card>.json, copied to
# $OUT when that is set (the device tool returns $OUT's files). A deadline
# (BENCH_GPU_DEADLINE_S, default 480) stops the benchmark cleanly.
set -euo pipefail
cd "$(dirname "$0")/../.."
PACK=${1:-.gpu-pack}
shift || true
[ -f "$PACK/deno.xz" ] || { echo "run.sh: no pack at $PACK (build it with: deno run -A bench/gpu/pack.ts)" >&2; exit 2; }

WORK=${BENCH_GPU_WORK:-/tmp/scalora-gpu}
mkdir -p "$WORK/bin" "$WORK/deno-dir"
if [ ! -x "$WORK/bin/deno" ]; then xz -dc "$PACK/deno.xz" >"$WORK/bin/deno" && chmod +x "$WORK/bin/deno"; fi
export PATH="$WORK/bin:$PATH"
if [ ! -d node_modules/.deno ]; then tar -xJf "$PACK/node_modules.tar.xz"; fi

# Vulkan loader: only where the system has none (unpacking over an existing one could break it).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  if [ "$(id -u)" -eq 0 ] && compgen -G "$PACK/debs/*.deb" >/dev/null; then
    for f in "$PACK"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  else
    echo "run.sh: no Vulkan loader on this machine and none unpacked (needs root and $PACK/debs)" >&2
  fi
fi
# The NVIDIA ICD where the loader's search path does not reach it (images that mount the driver under /usr/local/nvidia).
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && ! compgen -G "/usr/share/vulkan/icd.d/nvidia*.json" >/dev/null &&
  ! compgen -G "/etc/vulkan/icd.d/nvidia*.json" >/dev/null; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi

export DENO_DIR="$WORK/deno-dir" NO_COLOR=1
# node_modules holds every package: use it as is (manual) and never reach for a registry (cached-only).
DENO=(deno run --node-modules-dir=manual --cached-only --no-check -A)
echo "== deno $(deno --version | head -n 1 | cut -d' ' -f2); VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

results=$(mktemp -d)
status=0
timeout "${BENCH_GPU_DEADLINE_S:-480}" "${DENO[@]}" bench/gpu.ts --out "$results/gpu.json" "$@" || status=$?
if [ -f "$results/gpu.json" ]; then
  card=$(sed -n 's/^  "card": "\(.*\)",$/\1/p' "$results/gpu.json" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-' |
    sed 's/--*/-/g; s/^-//; s/-$//')
  mkdir -p bench/results
  cp "$results/gpu.json" "bench/results/gpu-${card:-unknown}.json"
  if [ -n "${OUT:-}" ]; then cp "$results/gpu.json" "$OUT/gpu-${card:-unknown}.json"; fi
  echo "== wrote bench/results/gpu-${card:-unknown}.json"
fi
exit "$status"
