"""Motion and text scorers on frames drawn here, where the right ordering is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from svd.curation.motion import flow_size, motion_score
from svd.curation.text import clip_text_area, text_area, text_size
from svd.params import MotionParams

P = MotionParams()


def moving_square(speed: float, n: int = 36, h: int = 96, w: int = 128) -> np.ndarray:
    """A textured background with a bright square moving `speed` px per frame to the right."""
    yy, xx = np.mgrid[0:h, 0:w]
    bg = (((xx // 12 + yy // 12) % 2) * 60 + 60).astype(np.uint8)
    frames = np.repeat(np.repeat(bg[None, ..., None], 3, axis=3), n, axis=0)
    for t in range(n):
        x = int(10 + speed * t)
        frames[t, 30:60, x : x + 30] = 230
    return frames


def test_faster_scores_higher_and_still_lowest() -> None:
    scores = [motion_score(moving_square(v), 12.0, P) for v in (0.0, 0.5, 1.0, 2.0)]
    assert scores == sorted(scores) and scores[0] < 0.5 * scores[1]


def test_resampling_inside_matches_a_caller_that_sampled_already() -> None:
    frames = moving_square(1.0)  # 36 frames at 12 fps -> 2 fps is every 6th frame
    h, w = flow_size(128, 96, P.short_side)
    small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames[::6]])
    assert motion_score(frames, 12.0, P) == pytest.approx(motion_score(small, 2.0, P), rel=1e-6)


def test_too_short_for_two_flow_frames() -> None:
    with pytest.raises(ValueError, match="need 2"):
        motion_score(moving_square(1.0, n=6), 12.0, P)


def test_text_area_sees_large_text_and_not_a_blank_frame() -> None:
    h, w = text_size(128, 96, 320)
    blank = np.full((h, w, 3), 90, np.uint8)
    titled = blank.copy()
    cv2.putText(titled, "BREAKING NEWS", (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (255, 255, 255), 3)
    assert text_area(blank) == 0.0
    assert 0.05 < text_area(titled) < 0.5
    assert clip_text_area([blank, titled, blank]) == text_area(titled)  # max over frames, see text.py
