#!/usr/bin/env python3
"""Scene sampling benchmark: vidgate `frames --scenes` against PySceneDetect's detect-content.

Runs both tools on real clips from fixtures/fetch.sh and prints, per clip and tool:

  detections  frames vidgate keeps; the start of each scene detect-content finds
  hits        reference shots with at least one detection in them
  extras      detections beyond the first in a shot (one frame per shot is the goal)
  in fades    detections inside a fade or dissolve (a dark or half-blended picture,
              not the one the shot settles on)
  cpu s       user + sys of the process and its children (ffmpeg), median of rounds

The reference shots are detect-content's own scenes, checked by eye on contact sheets
and against ffmpeg's scdet filter, with what it cannot see added: the trailer's
dissolve through dark into the sepia "Revenge is coming" shot at 47.25 s, which
detect-content (built for hard cuts) merges into the shot before. The fades are where
the trailer's mean luma ramps between a shot's level and black (signalstats YAVG).

PySceneDetect is installed with pinned versions into a virtual environment under
~/.cache/vidgate/tools. It is installed without dependency resolution because
scenedetect 0.7.2 requires opencv-python, whose cv2 module would overwrite the
headless build's; its other requirements are pinned here instead.

Usage: benches/scenes.py [--rounds N] [--vidgate PATH] [--fixtures DIR] [--tools DIR]
Build first: cargo build --release
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
PINS = [
    "scenedetect==0.7.2",
    "opencv-python-headless==4.12.0.88",
    "numpy==2.2.6",
    "click==8.5.1",
    "platformdirs==4.14.9",
    "tqdm==4.70.1",
]

# clip -> (shots as (start s, end s, what), fades as (start s, end s))
REFERENCE = {
    "trailer_bbb.mp4": (
        [
            (0.0, 10.0, "sky, titles"),
            (10.0, 14.083, "bird"),
            (14.083, 24.708, "bunny in its hole"),
            (24.708, 32.0, "bunny stretches"),
            (32.0, 36.0, "three rodents"),
            (36.0, 37.5, "meadow"),
            (37.5, 41.167, "bunny behind the tree"),
            (41.167, 43.708, "rodents at the tree"),
            (43.708, 47.25, "bunny close-up"),
            (47.25, 51.833, "sepia close-up"),
            (51.833, 55.2, "Made with MoviePy"),
        ],
        [(0.0, 1.042), (9.0, 11.0), (13.0, 15.0), (31.0, 33.0), (45.75, 48.75), (50.167, 52.0)],
    ),
    "Megamind.avi": (
        [
            (0.0, 4.129, "her, first"),
            (4.129, 6.465, "him, over her shoulder"),
            (6.465, 8.383, "her, again"),
            (8.383, 11.3, "him, close-up"),
        ],
        [],
    ),
    "cup.mp4": ([(0.0, 8.2, "one handheld shot")], []),
}


def cpu_of(cmd, stdout=subprocess.DEVNULL):
    """Run `cmd`; CPU seconds (user+sys, waited-for descendants included) and its stdout."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            sys.exit(f"failed ({status}): {' '.join(cmd)}")
        out.seek(0)
        return usage.ru_utime + usage.ru_stime, out.read().decode()


def ensure_scenedetect(tools):
    venv = os.path.join(tools, "scenedetect-0.7.2")
    exe = os.path.join(venv, "bin", "scenedetect")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", *PINS], check=True)
    return exe


def detect_content(exe, clip, work):
    """Scene start times in seconds, and CPU seconds."""
    cmd = [exe, "-q", "-i", clip, "-o", work, "detect-content", "list-scenes", "-s", "-f", "scenes.csv"]
    cpu, _ = cpu_of(cmd)
    with open(os.path.join(work, "scenes.csv"), newline="") as f:
        starts = [float(row["Start Time (seconds)"]) for row in csv.DictReader(f)]
    return starts, cpu


def vidgate_scenes(exe, clip, work):
    """Kept frame times in seconds, and CPU seconds."""
    cmd = [exe, "frames", clip, "--scenes", "--json", "--out", os.path.join(work, "frames")]
    cpu, out = cpu_of(cmd)
    return [f["pts_ms"] / 1000 for f in json.loads(out)], cpu


def score(times, shots, fades):
    per_shot = [sum(1 for t in times if a <= t < b) for a, b, _ in shots]
    hits = sum(1 for n in per_shot if n)
    extras = sum(n - 1 for n in per_shot if n > 1)
    in_fades = [t for t in times if any(a <= t < b for a, b in fades)]
    return hits, extras, in_fades


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vidgate", default=os.path.join(ROOT, "target/release/vidgate"))
    ap.add_argument("--fixtures", default=os.environ.get("VIDGATE_FIXTURES", os.path.join(CACHE, "vidgate/fixtures")))
    ap.add_argument("--tools", default=os.path.join(CACHE, "vidgate/tools"))
    args = ap.parse_args()
    if not os.access(args.vidgate, os.X_OK):
        sys.exit(f"{args.vidgate} is missing: cargo build --release, or pass --vidgate")
    sd = ensure_scenedetect(args.tools)
    tools = [("detect-content", lambda c, w: detect_content(sd, c, w)),
             ("vidgate", lambda c, w: vidgate_scenes(args.vidgate, c, w))]

    print(f"{'clip':<16} {'tool':<15} {'detections':>10} {'hits':>7} {'extras':>6} {'in fades':>8} {'cpu s':>6}")
    details = []
    for clip, (shots, fades) in REFERENCE.items():
        path = os.path.join(args.fixtures, clip)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run fixtures/fetch.sh")
        for name, run in tools:
            cpus = []
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as work:
                    times, cpu = run(path, work)
                cpus.append(cpu)
            hits, extras, in_fades = score(times, shots, fades)
            print(f"{clip:<16} {name:<15} {len(times):>10} {hits:>3}/{len(shots):<3} {extras:>6} "
                  f"{len(in_fades):>8} {statistics.median(cpus):>6.2f}")
            details.append(f"{clip} {name}: {' '.join(f'{t:.2f}' for t in times)}"
                           + (f"  (in fades: {' '.join(f'{t:.2f}' for t in in_fades)})" if in_fades else ""))
    print()
    print("\n".join(details))


if __name__ == "__main__":
    main()
