#!/usr/bin/env bash
# Fuzz the code that reads untrusted text: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Runs each target of fuzz/ (all of them by default) for SECONDS_PER_TARGET
# (default 60) with cargo-fuzz on a nightly toolchain, installing cargo-fuzz
# when it is missing. Not part of `cargo test`: the inputs that once crashed
# are replayed on stable by tests/fuzz_regressions.rs.
#
# The seeds in fuzz/corpus/TARGET are read, never written; what a run learns
# goes to fuzz/work/corpus/TARGET and is reused by the next run. Exits
# non-zero when a target crashes, panics, runs out of time or memory on an
# input, or does not build, and prints where the input was written.
#
# Environment: FUZZ_TOOLCHAIN (default nightly), CARGO_TARGET_DIR (where
# cargo-fuzz builds; fuzz/target when unset).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
cd "$(dirname "$0")/.."

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzzing needs a $toolchain toolchain: rustup toolchain install $toolchain" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

# One build for every target; a build failure is a failure of the run.
echo "== building the fuzz targets" >&2
if ! log="$(cargo "+$toolchain" fuzz build 2>&1)"; then
    echo "$log" | tail -n 40 >&2
    echo "the fuzz targets do not build: cargo +$toolchain fuzz build" >&2
    exit 1
fi

failed=()
for target in "${targets[@]}"; do
    work="fuzz/work/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$work" "fuzz/corpus/$target" "$artifacts"
    marker="$(mktemp)"
    echo "== $target: ${seconds}s" >&2
    # -timeout: an input that takes 10 s is a hang, and a failure.
    if cargo "+$toolchain" fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        echo "== $target: clean" >&2
    else
        failed+=("$target")
        echo "== $target: FAILED" >&2
        find "$artifacts" -type f -newer "$marker" | while read -r input; do
            echo "   input: $input" >&2
            echo "   replay: cargo +$toolchain fuzz run $target $input" >&2
        done
    fi
    rm -f "$marker"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s each without a failure" >&2
