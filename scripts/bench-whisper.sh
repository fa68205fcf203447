#!/usr/bin/env bash
# scripts/bench-whisper.sh — vidgate's local transcription against
# faster-whisper, side by side: the same Whisper base weights (the CTranslate2
# directory `fixtures/fetch.sh --model whisper-base` assembles), the same
# threads, the same clip, the same search (int8, beam 5, English, timestamps,
# no VAD filter, no conditioning on the previous window's text).
#
# The clip: the five LibriVox recordings of fixtures/fetch.sh one after the
# other, REPEAT times (default 3: about 75 s, so several 30 s windows), as
# 16 kHz mono WAV. Each side runs in its own process (load timed apart, one
# warm-up run, then RUNS timed runs, median reported); the two take turns
# ROUNDS times so a busy machine slows both alike. Prints each round's
# real-time factor (transcription time / audio time; lower is faster), peak
# RSS and load time, and the speed ratio vidgate / faster-whisper (> 1:
# vidgate is faster). The goal (issue 16) is a ratio >= 0.9.
#
# Usage: scripts/bench-whisper.sh [--threads N] [--runs N] [--rounds N] [--repeat N]
#
# Environment:
#   BENCH_PROFILE   cargo profile of vidgate's side (default: bench, i.e. release)
#   BENCH_FEATURES  its cargo feature (default: whisper, CTranslate2 on MKL;
#                   whisper-ruy for the build on ruy)
#   FW_VENV         virtual environment for faster-whisper (default:
#                   ${XDG_CACHE_HOME:-$HOME/.cache}/vidgate/tools/faster-whisper-venv);
#                   made and filled from PyPI (pinned below) the first time
set -euo pipefail

THREADS=2
RUNS=3
ROUNDS=2
REPEAT=3
while (($#)); do
  case $1 in
    --threads) THREADS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-whisper.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# faster-whisper and the CTranslate2 it runs on, pinned: 4.8.4 is the
# CTranslate2 that ct2rs 0.10.3 builds from source for vidgate.
FW_PINS=(faster-whisper==1.2.1 ctranslate2==4.8.4)

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { printf 'bench-whisper: %s\n' "$*" >&2; }

CACHE=$(fixtures/fetch.sh --no-clips --model whisper-base 2>/dev/null | tail -n1)
fixtures/fetch.sh --model whisper-base librivox-0870 librivox-0880 librivox-0890 librivox-0920 librivox-0930 >/dev/null
MODEL="$CACHE/whisper-base"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vidgate-bench-whisper.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
WAV="$WORK/librivox-x$REPEAT.wav"
inputs=()
for ((i = 0; i < REPEAT; i++)); do
  for id in 0870 0880 0890 0920 0930; do inputs+=(-i "$CACHE/librivox-$id.wav"); done
done
n=$((REPEAT * 5))
filter=""
for ((i = 0; i < n; i++)); do filter+="[$i:a]"; done
ffmpeg -hide_banner -loglevel error "${inputs[@]}" -filter_complex "${filter}concat=n=$n:v=0:a=1[a]" \
  -map "[a]" -ar 16000 -ac 1 -c:a pcm_s16le "$WAV"

VENV=${FW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vidgate/tools/faster-whisper-venv}
if ! "$VENV/bin/python" -c 'import faster_whisper' 2>/dev/null; then
  log "installing ${FW_PINS[*]} into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${FW_PINS[@]}"
fi

PROFILE=${BENCH_PROFILE:-bench}
FEATURES=${BENCH_FEATURES:-whisper}
log "building benches/whisper.rs (profile $PROFILE, feature $FEATURES; the first build compiles CTranslate2)"
BIN=$(cargo build --profile "$PROFILE" --no-default-features --features "$FEATURES" --bench whisper \
  --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "whisper" and m.get("executable"):
        print(m["executable"])')
[[ -n $BIN ]] || { log "the bench did not build: cargo build --profile $PROFILE --features $FEATURES --bench whisper"; exit 1; }

RESULTS="$WORK/results.jsonl"
for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r/$ROUNDS: vidgate"
  "$BIN" --wav "$WAV" --model "$MODEL" --threads "$THREADS" --runs "$RUNS" | sed "s/^{/{\"round\": $r, \"side\": \"vidgate\", /" >>"$RESULTS"
  tail -n1 "$RESULTS" >&2
  log "round $r/$ROUNDS: faster-whisper"
  "$VENV/bin/python" scripts/bench_whisper_fw.py --wav "$WAV" --model "$MODEL" --threads "$THREADS" --runs "$RUNS" |
    sed "s/^{/{\"round\": $r, \"side\": \"faster-whisper\", /" >>"$RESULTS"
  tail -n1 "$RESULTS" >&2
done

python3 - "$RESULTS" "$PROFILE" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
audio = rows[0]["audio_s"]
print(f"Whisper base, int8, {rows[0]['threads']} threads, {audio:.1f} s of LibriVox speech "
      f"(vidgate built with profile {sys.argv[2]})\n")
print("| round | engine | transcribe (s) | real-time factor | load (s) | peak RSS (MB) |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['round']} | {r['engine']} | {r['transcribe_s']:.2f} | {r['rtf']:.3f} | {r['load_s']:.2f} | {r['peak_rss_mb']:.0f} |")
med = {side: statistics.median(r["transcribe_s"] for r in rows if r["side"] == side) for side in ("vidgate", "faster-whisper")}
rss = {side: max(r["peak_rss_mb"] for r in rows if r["side"] == side) for side in ("vidgate", "faster-whisper")}
ratio = med["faster-whisper"] / med["vidgate"]
print(f"\nspeed, vidgate / faster-whisper: {ratio:.2f}x (goal >= 0.9x); "
      f"peak RSS {rss['vidgate']:.0f} MB vs {rss['faster-whisper']:.0f} MB")
texts = {r["side"]: r["text"] for r in rows}
for side, text in texts.items():
    print(f"\n{side} heard: {text[:300]}{'…' if len(text) > 300 else ''}")
PY
