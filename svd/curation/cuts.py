"""Scene cuts by a cascade of PySceneDetect detectors (paper Sec. 3.1, App. C).

Each detector catches what the others miss: ContentDetector hard cuts (HSV jump between frames),
AdaptiveDetector hard cuts during fast motion (the jump relative to its neighbours' average), and
ThresholdDetector fades through black (mean intensity crossing a floor). The paper runs its cascade
at several frame rates; here all three see every frame, downscaled to `downscale_width`, because
frame-exact cuts are what keyframe snapping needs and the downscale is the real speed lever.

Scenes are then trimmed of the fade frames at their ends (see trim_fades).

Cuts closer than `min_scene_len` frames are one event seen twice (a fade trips ContentDetector on
its way down and ThresholdDetector at its middle); the cut of the most specific detector wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, ThresholdDetector

from svd.media.io import VideoInfo, iter_frames
from svd.params import CutParams

Scene = tuple[int, int]  # (start frame, end frame exclusive)


def detection_size(info: VideoInfo, width: int) -> tuple[int, int]:
    """(height, width) no wider than `width`, aspect kept, even so every decoder path agrees."""
    w = min(width, info.width)
    h = max(2, round(info.height * w / info.width / 2) * 2)
    return h, w


def detect_cuts(frames: Iterable[np.ndarray], fps: float, p: CutParams) -> tuple[list[int], np.ndarray]:
    """Cut frames (first frame of each new scene) of an RGB frame stream, and each frame's mean
    intensity (what ThresholdDetector thresholds), which fade trimming reuses."""
    # Most specific first: a fade's cut sits at the middle of the dark part, a content cut on the jump.
    detectors = [
        ThresholdDetector(threshold=p.fade_threshold, min_scene_len=p.min_scene_len),
        ContentDetector(threshold=p.content_threshold, min_scene_len=p.min_scene_len),
        AdaptiveDetector(adaptive_threshold=p.adaptive_threshold, min_scene_len=p.min_scene_len),
    ]
    found: list[tuple[int, int]] = []  # (frame, priority)
    brightness: list[float] = []
    for i, rgb in enumerate(frames):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        brightness.append(float(bgr.mean()))
        tc = FrameTimecode(i, float(fps))
        for rank, det in enumerate(detectors):
            found += [(c.frame_num, rank) for c in det.process_frame(tc, bgr)]
    n = len(brightness)
    if n:
        last = FrameTimecode(n - 1, float(fps))
        for rank, det in enumerate(detectors):
            found += [(c.frame_num, rank) for c in det.post_process(last)]
    return merge_cuts(found, p.min_scene_len, n), np.array(brightness)


def merge_cuts(found: list[tuple[int, int]], min_scene_len: int, frames: int) -> list[int]:
    """One cut per cluster of (frame, priority) events closer than min_scene_len; lowest priority wins."""
    events = sorted((f, r) for f, r in found if 0 < f < frames)
    cuts: list[int] = []
    cluster: list[tuple[int, int]] = []
    for f, r in events:
        if cluster and f - cluster[-1][0] >= min_scene_len:
            cuts.append(min(cluster, key=lambda e: (e[1], e[0]))[0])
            cluster = []
        cluster.append((f, r))
    if cluster:
        cuts.append(min(cluster, key=lambda e: (e[1], e[0]))[0])
    return cuts


def scenes_from_cuts(cuts: list[int], frames: int) -> list[Scene]:
    bounds = [0, *cuts, frames]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def trim_fades(scenes: list[Scene], brightness: np.ndarray, ratio: float) -> list[Scene]:
    """Drop the frames at either end of a scene that are darker than `ratio` x its median brightness.

    A fade's cut lands in the middle of the dark part, so both neighbours keep half a fade; fading
    frames are no content and, worse, a brightness ramp reads as optical flow, which would give a
    still scene the motion score of a moving one.
    """
    out = []
    for a, b in scenes:
        floor = ratio * float(np.median(brightness[a:b]))
        while a < b and brightness[a] < floor:
            a += 1
        while b > a and brightness[b - 1] < floor:
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def detect_scenes(path: str | Path, info: VideoInfo, p: CutParams) -> list[Scene]:
    """Scenes of a whole video, decoding it once at detection size."""
    cuts, brightness = detect_cuts(
        iter_frames(path, size=detection_size(info, p.downscale_width)), info.fps, p
    )
    return trim_fades(scenes_from_cuts(cuts, len(brightness)), brightness, p.fade_trim)
