"""Motion and text scorers on frames drawn here, where the right ordering is known, and the scorer
contract that the table, the checks and the filters derive from."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from svd.curation import scorers
from svd.curation.scorers.base import ClipFrames, Frames
from svd.curation.scorers.motion import MotionParams, flow_magnitude, motion_score
from svd.curation.scorers.text import Text, TextParams, text_area
from svd.curation.table import schema
from svd.params import CurateParams, ParamsError, load

P = MotionParams()
ROOT = Path(__file__).resolve().parents[3]


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


def test_resampling_matches_frames_sampled_already() -> None:
    frames = moving_square(1.0)  # 36 frames at 12 fps -> 2 fps is every 6th frame
    h, w = Frames(short_side=P.short_side).size(128, 96)
    small = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames[::6]]
    assert motion_score(frames, 12.0, P) == pytest.approx(flow_magnitude(small), rel=1e-6)


def test_too_short_for_two_flow_frames() -> None:
    with pytest.raises(ValueError, match="motion needs 2"):
        motion_score(moving_square(1.0, n=6), 12.0, P)


def test_text_area_sees_large_text_and_not_a_blank_frame() -> None:
    h, w = Frames(long_side=320).size(128, 96)
    blank = np.full((h, w, 3), 90, np.uint8)
    titled = blank.copy()
    cv2.putText(titled, "BREAKING NEWS", (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (255, 255, 255), 3)
    assert text_area(blank) == 0.0
    assert 0.05 < text_area(titled) < 0.5
    clip = ClipFrames([blank, titled, blank], 12.0, 128, 96)
    assert Text(TextParams()).score(clip) == {"text_area": text_area(titled)}  # max over frames


def test_the_text_detector_runs_where_it_is_asked_or_says_why_not() -> None:
    """CUDA comes from onnxruntime-gpu's provider: on a machine without it, auto is the CPU (and the
    cache keys it so) and cuda is an error, never a silent CPU run."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime has a CUDA provider here")
    assert TextParams(device="auto").key() == TextParams().key()
    clip = ClipFrames([np.full((96, 128, 3), 90, np.uint8)], 12.0, 128, 96)
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        Text(TextParams(device="cuda")).score(clip)


def test_registry_drives_params_and_the_table_schema() -> None:
    assert set(scorers.SCORERS) >= {"motion", "text"}
    p = CurateParams(scorers={"motion": {"fps": 4.0}})
    assert p.scorers["motion"] == MotionParams(fps=4.0) and "text" not in p.scorers
    assert "motion_score" in schema(["motion"]) and "text_area" not in schema(["motion"])
    for name, cls in scorers.SCORERS.items():
        assert cls.name == name and cls.columns and scorers.version(name)
    with pytest.raises(ValueError, match="unknown scorer"):
        CurateParams(scorers={"laion": {}})


def test_a_typo_in_a_scorer_param_fails_at_load() -> None:
    with pytest.raises(ParamsError, match="fsp"):
        load(ROOT / "params.yaml", {"curate": {"scorers": {"motion": {"fsp": 2}}}})
