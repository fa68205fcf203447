#!/usr/bin/env bash
# What vidgate needs to build and test: ffmpeg (ffmpeg + ffprobe, used at run
# time; vidgate never downloads one), cmake + clang for the llama.cpp build of
# the local backend, and, for the tests only, Python's gguf and numpy (the tiny
# vision model generator), GNU time (the peak-memory checks), Chromium with
# its WebDriver (the web page's browser tests), the official `openai`
# Python client (a client of `vidgate serve`) and espeak-ng (speech with a
# known text, under the speech track's test clips), Debian's PostgreSQL
# server (the journal's shared backend; scripts/with-postgres.sh starts one
# into a temporary directory for the tests) and, on x86-64, Intel MKL and an
# OpenMP runtime for local Whisper (cargo feature `whisper`: CTranslate2's
# int8 products run on MKL): libmkl-dev is in Debian's non-free component
# (enabled here, for that package's sake, when apt has no candidate for it)
# and Ubuntu's multiverse. Installs only what is missing.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
[ -x /usr/bin/time ] || missing+=(time)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "$(uname -m)" = x86_64 ]; then
    dpkg -s libmkl-dev >/dev/null 2>&1 || missing+=(libmkl-dev)
    dpkg -s libomp-dev >/dev/null 2>&1 || missing+=(libomp-dev)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
fi
if ! python3 -c 'import gguf, numpy' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "gguf==0.19.0" "numpy==2.4.6" >&2
fi
if [ "$(python3 -c 'import openai; print(openai.__version__)' 2>/dev/null)" != "3.63.0" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "openai==3.63.0" >&2
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if [[ " ${missing[*]} " == *" libmkl-dev "* ]] && ! apt-cache policy libmkl-dev 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    # Debian ships MKL in non-free only: add that component of the archives
    # the machine already uses (its own sources, the component changed).
    . /etc/os-release
    deb822=/etc/apt/sources.list.d/debian.sources
    if [ "${ID:-}" = debian ] && [ -f "$deb822" ]; then
        echo "enabling Debian's non-free component for libmkl-dev" >&2
        sed -e 's/^Components:.*/Components: non-free/' "$deb822" \
            | $sudo tee /etc/apt/sources.list.d/vidgate-non-free.sources >/dev/null
        $sudo apt-get update -qq
    elif [ "${ID:-}" = debian ] && grep -q '^deb .* main' /etc/apt/sources.list 2>/dev/null; then
        echo "enabling Debian's non-free component for libmkl-dev" >&2
        sed -n -e 's/^\(deb [^#]*\) main.*/\1 non-free/p' /etc/apt/sources.list \
            | $sudo tee /etc/apt/sources.list.d/vidgate-non-free.list >/dev/null
        $sudo apt-get update -qq
    else
        echo "libmkl-dev has no install candidate: enable Ubuntu's multiverse (or Debian's non-free) component" >&2
    fi
fi
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
