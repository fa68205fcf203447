#!/usr/bin/env python3
"""Frame extraction benchmark: vidgate against the plain ffmpeg command, side by side.

Generates a 60 s 1080p30 H.264 clip (testsrc2 + noise, 6 Mb/s, a keyframe every
2 s) and runs, interleaved for several rounds, measuring CPU time (user + sys,
children included) and peak RSS of the largest process:

  baseline   ffmpeg -i clip -vf fps=1,scale=512:-2 -f image2pipe -c:v mjpeg -
  1 fps      vidgate frames --fps 1 --width 512
  keyframes  vidgate frames --keyframes --width 512
  1 per 10 s vidgate frames --fps 0.1 --width 512

then the peak memory of a 1 fps pass over the 1-minute clip and over a long
one made with -stream_loop (60 minutes, or --long-minutes N).

Usage: benches/extract.py [--rounds N] [--long-minutes N] [--vidgate PATH]
Build first: cargo build --release
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, stdout=subprocess.DEVNULL):
    """CPU seconds (user+sys, waited-for descendants included) and peak RSS in MiB."""
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(cmd)}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def make_clip(path, seconds):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size=1920x1080:rate=30:duration={seconds},noise=alls=20:allf=t",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M", "-maxrate", "6M", "-bufsize", "12M",
         "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p", path],
        check=True)


def loop_clip(src, dst, times):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(times - 1),
                    "-i", src, "-c", "copy", dst], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--long-minutes", type=int, default=60)
    ap.add_argument("--vidgate", default=os.path.join(ROOT, "target/release/vidgate"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidgate-bench"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    clip = os.path.join(args.work, "clip-60s-1080p30.mp4")
    if not os.path.exists(clip):
        print("making the 60 s 1080p30 clip ...", file=sys.stderr)
        make_clip(clip, 60)
    out = os.path.join(args.work, "frames")

    def vidgate(*flags, video=clip):
        shutil.rmtree(out, ignore_errors=True)
        return [args.vidgate, "frames", *flags, "--width", "512", "--max-frames", "10000", "--out", out, video]

    cases = {
        "baseline ffmpeg fps=1 mjpeg": ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", clip,
                                        "-vf", "fps=1,scale=512:-2", "-f", "image2pipe", "-c:v", "mjpeg", "-"],
        "vidgate --fps 1": None,
        "vidgate --keyframes": None,
        "vidgate --fps 0.1": None,
    }
    flags = {"vidgate --fps 1": ["--fps", "1"], "vidgate --keyframes": ["--keyframes"], "vidgate --fps 0.1": ["--fps", "0.1"]}
    cpu = {k: [] for k in cases}
    rss = {k: [] for k in cases}
    for r in range(args.rounds):
        for name, cmd in cases.items():
            c, m = run(cmd if cmd else vidgate(*flags[name]))
            cpu[name].append(c)
            rss[name].append(m)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    base = statistics.median(cpu["baseline ffmpeg fps=1 mjpeg"])
    one = statistics.median(cpu["vidgate --fps 1"])
    print(f"\n60 s 1080p30 H.264, 6 Mb/s, keyframe every 2 s; median of {args.rounds} interleaved rounds\n")
    print(f"| {'run':30} | {'CPU s':>7} | {'vs baseline':>11} | {'vs vidgate 1 fps':>16} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 13}|{'-' * 18}|{'-' * 14}|")
    for name in cases:
        c = statistics.median(cpu[name])
        print(f"| {name:30} | {c:7.2f} | {c / base:10.2f}x | {one / c:15.1f}x cheaper |"
              f" {max(rss[name]):12.0f} |" if name not in ("baseline ffmpeg fps=1 mjpeg", "vidgate --fps 1") else
              f"| {name:30} | {c:7.2f} | {c / base:10.2f}x | {'':16} | {max(rss[name]):12.0f} |")

    long_clip = os.path.join(args.work, f"clip-{args.long_minutes}min.mp4")
    if not os.path.exists(long_clip):
        loop_clip(clip, long_clip, args.long_minutes)
    print(f"\nPeak memory of a 1 fps pass (largest process; vidgate and its ffmpeg):\n")
    print(f"| {'input':12} | {'frames':>6} | {'CPU s':>8} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 14}|{'-' * 8}|{'-' * 10}|{'-' * 14}|")
    for label, video, minutes in (("1 minute", clip, 1), (f"{args.long_minutes} minutes", long_clip, args.long_minutes)):
        c, m = run(vidgate("--fps", "1", video=video))
        print(f"| {label:12} | {minutes * 60:6} | {c:8.1f} | {m:12.0f} |")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
