#!/usr/bin/env python3
"""faster-whisper on one WAV file, timed: the anchor side of
scripts/bench-whisper.sh (vidgate's side is benches/whisper.rs).

    bench_whisper_fw.py --wav FILE --model DIR [--threads N] [--runs N]

The same settings as vidgate's whisper_local: int8 on the CPU, beam 5,
language given, timestamps on, no VAD filter, and no conditioning on the
previous window's text (vidgate does not prompt with it, so both decode the
same tokens). The model is loaded first (timed apart), one run warms up,
`--runs` runs are timed and the median is reported. Prints one JSON line:
seconds of audio, load time, median and every run's time, the real-time
factor (time / audio), peak RSS (ru_maxrss) and the text heard.
"""

import argparse
import json
import resource
import statistics
import time
import wave

import ctranslate2
import faster_whisper
import numpy as np
from faster_whisper import WhisperModel


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--wav", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--language", default="en")
    a = p.parse_args()

    with wave.open(a.wav) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{a.wav}: need 16 kHz mono 16-bit")
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    audio_s = len(audio) / 16000.0

    started = time.perf_counter()
    model = WhisperModel(a.model, device="cpu", compute_type="int8", cpu_threads=a.threads, num_workers=1)
    load_s = time.perf_counter() - started

    def run():
        started = time.perf_counter()
        segments, _ = model.transcribe(
            audio,
            language=a.language,
            beam_size=5,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=False,
        )
        text = " ".join(s.text.strip() for s in segments)
        return time.perf_counter() - started, text

    _, text = run()
    runs = [run()[0] for _ in range(max(1, a.runs))]
    median = statistics.median(runs)
    print(
        json.dumps(
            {
                "engine": f"faster-whisper {faster_whisper.__version__} (CTranslate2 {ctranslate2.__version__}, int8)",
                "audio_s": audio_s,
                "threads": a.threads,
                "load_s": load_s,
                "transcribe_s": median,
                "runs_s": runs,
                "rtf": median / audio_s,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "text": text,
            }
        )
    )


if __name__ == "__main__":
    main()
