"""Motion score: dense optical flow magnitude, one float per clip (paper App. C).

OpenCV Farneback between consecutive frames sampled at MotionParams.fps, on frames scaled so the
short side is MotionParams.short_side px; the magnitude is averaged over space and then over frame
pairs. The unit is therefore pixels of that small frame per 1 / fps seconds: comparable between
clips of any resolution or frame rate, which is what a percentile filter over a corpus needs.
The paper's Stage III recomputes flow with RAFT at 800x450; that needs weights and is not done here.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

from svd.params import MotionParams

# On a 16-px frame the window must stay small or it spans the frame, and OpenCV builds no pyramid
# level below ~2 x poly_n px anyway. Even so Farneback is not exactly 0 between identical frames
# (border effects); poly_n 7 / sigma 1.5 with a 5-px window kept that floor lowest relative to real
# motion on the synthetic corpus (static clips < 0.1, slow shapes > 0.17).
PYR_SCALE, LEVELS, WINSIZE, ITERATIONS, POLY_N, POLY_SIGMA = 0.5, 3, 5, 3, 7, 1.5


def flow_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side at `short_side`, aspect kept."""
    if width <= height:
        return round(height * short_side / width), short_side
    return short_side, round(width * short_side / height)


def sample_times(frames: int, fps: float, p: MotionParams) -> list[float]:
    """Times (s) at which flow frames are taken from a clip of `frames` frames at `fps`."""
    return [k / p.fps for k in range(math.ceil(frames / fps * p.fps - 1e-9))]


def motion_score(frames: np.ndarray, fps: float, p: MotionParams) -> float:
    """Mean flow magnitude of uint8 (T, H, W, 3) RGB frames at `fps`.

    Frames are resampled to p.fps (nearest frame) and scaled to p.short_side here; a caller that
    already decoded them that way (annotate, from one decoding pass) pays nothing for either step.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    picks = [min(len(frames) - 1, math.floor(t * fps + 0.5)) for t in sample_times(len(frames), fps, p)]
    if len(picks) < 2:
        raise ValueError(
            f"{len(frames)} frames at {fps} fps give {len(picks)} flow frame at {p.fps} fps, need 2"
        )
    h, w = flow_size(frames.shape[2], frames.shape[1], p.short_side)
    gray = [cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY) for i in picks]
    gray = [g if g.shape == (h, w) else cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA) for g in gray]
    flow: np.ndarray = np.zeros((h, w, 2), np.float32)  # (H, W, 2) px, reused as the output buffer
    mags = []
    for a, b in itertools.pairwise(gray):
        flow = cv2.calcOpticalFlowFarneback(
            a, b, flow, PYR_SCALE, LEVELS, WINSIZE, ITERATIONS, POLY_N, POLY_SIGMA, 0
        )
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(mags))
