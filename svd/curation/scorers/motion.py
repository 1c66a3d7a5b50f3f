"""Motion score: dense optical flow magnitude, one float per clip (paper App. C).

OpenCV Farneback between consecutive frames sampled at `fps`, on frames scaled so the short side is
`short_side` px; the magnitude is averaged over space and then over frame pairs. The unit is pixels
of that small frame per 1 / fps seconds: comparable between clips of any resolution or frame rate,
which is what a percentile filter over a corpus needs. The paper's Stage III recomputes flow with
RAFT at 800x450; that needs weights and is not done here.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import cv2
import numpy as np
from pydantic import Field

from svd.curation.scorers.base import ClipFrames, Column, Frames, ScorerParams

# On a 16-px frame the window must stay small or it spans the frame, and OpenCV builds no pyramid
# level below ~2 x poly_n px anyway. Even so Farneback is not exactly 0 between identical frames
# (border effects); poly_n 7 / sigma 1.5 with a 5-px window kept that floor lowest relative to real
# motion on the synthetic corpus (static clips < 0.1, slow shapes > 0.17).
PYR_SCALE, LEVELS, WINSIZE, ITERATIONS, POLY_N, POLY_SIGMA = 0.5, 3, 5, 3, 7, 1.5


class MotionParams(ScorerParams):
    fps: float = Field(default=2.0, gt=0)  # Farneback flow sampled at 2 fps ...
    short_side: int = Field(default=16, ge=8, le=64)  # ... on frames whose short side is 16 px


class Motion:
    name: ClassVar[str] = "motion"
    Params = MotionParams
    columns: ClassVar[dict[str, Column]] = {
        "motion_score": Column("mean Farneback flow magnitude, px of the short_side frame per 1 / fps s", 0.0)
    }

    def __init__(self, params: MotionParams) -> None:
        self.p = params

    def frames(self) -> Frames:
        return Frames(fps=self.p.fps, short_side=self.p.short_side)

    def score(self, clip: ClipFrames) -> dict[str, float]:
        return {"motion_score": flow_magnitude(clip.frames)}


def flow_magnitude(frames: list[np.ndarray] | np.ndarray) -> float:
    """Mean flow magnitude between consecutive uint8 RGB frames already at flow size and rate."""
    if len(frames) < 2:
        raise ValueError(f"{len(frames)} flow frame(s): motion needs 2")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow: np.ndarray = np.zeros((*gray[0].shape, 2), np.float32)  # (H, W, 2) px, reused as output buffer
    mags = []
    for a, b in itertools.pairwise(gray):
        flow = cv2.calcOpticalFlowFarneback(
            a, b, flow, PYR_SCALE, LEVELS, WINSIZE, ITERATIONS, POLY_N, POLY_SIGMA, 0
        )
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(mags))


def motion_score(video: np.ndarray, fps: float, p: MotionParams) -> float:
    """Motion score of decoded uint8 (T, H, W, 3) frames at `fps` (evaluation scores generated videos
    with this): resampled to p.fps by nearest frame and scaled to p.short_side, then flow_magnitude."""
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {video.shape}")
    steps = math.ceil(len(video) / fps * p.fps - 1e-9)
    picks = [min(len(video) - 1, math.floor(k / p.fps * fps + 0.5)) for k in range(steps)]
    h, w = Frames(short_side=p.short_side).size(video.shape[2], video.shape[1])
    return flow_magnitude([cv2.resize(video[i], (w, h), interpolation=cv2.INTER_AREA) for i in picks])
