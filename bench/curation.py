"""The two speed levers of curation, each against its own full-resolution baseline on the same
real video (../shared/media/testvideo.mp4): cut detection on downscaled frames, and Farneback
motion on frames whose short side is 16 px (paper App. C)."""

from __future__ import annotations

import time
from pathlib import Path

from svd.curation.cuts import detect_cuts
from svd.curation.motion import motion_score

from svd.media.io import probe, read_frames
from svd.params import CutParams, MotionParams

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "testvideo.mp4"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> list[tuple[str, float, float]]:
    info = probe(VIDEO)
    full = read_frames(VIDEO, max_frames=240)
    h = round(info.height * 128 / info.width / 2) * 2
    small = read_frames(VIDEO, size=(h, 128), max_frames=240)
    cuts_full, found_full = timed(lambda: detect_cuts(full, info.fps, CutParams())[0])
    cuts_small, found_small = timed(lambda: detect_cuts(small, info.fps, CutParams())[0])
    paper = MotionParams()
    native = MotionParams(short_side=min(info.width, info.height))
    motion_full, _ = timed(lambda: motion_score(full, info.fps, native))
    motion_small, _ = timed(lambda: motion_score(full, info.fps, paper))
    print(f"  cuts found: full {found_full}, downscaled {found_small}")
    return [
        (f"cut detection, {len(full)} frames: {info.width}px -> 128px wide", cuts_full, cuts_small),
        ("motion score: native short side -> 16 px", motion_full, motion_small),
    ]
