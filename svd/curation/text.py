"""Text score: share of the frame covered by text, from a text detector (paper App. C).

The paper uses CRAFT; here the PP-OCRv4 detection model that ships inside the rapidocr-onnxruntime
wheel, so it runs offline. Only the detector runs (no recognition): the filter needs where text is,
not what it says. Boxes are rasterised and unioned, so overlapping boxes are not counted twice.

Of the first, middle and last frame the score is the MAXIMUM, not the mean: the filter exists to
drop clips with prominent text, and a title that is on screen in only one of three frames is still
in the clip; a mean would let it through at a third of its size.

Frames are scaled so their long side is TextParams.side (320 px) before detection. On the synthetic
corpus 480 and 640 px cost 2-3x the time and found more false text in plain shapes (a lone square
reads as the character 口), while 320 px still puts 2% overlays under 3% and 14% ones over 11%.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cv2
import numpy as np


@cache
def detector() -> Any:
    """The ONNX session, built once per process (loading it costs far more than one frame)."""
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml, update_model_path

    cfg = update_model_path(read_yaml(DEFAULT_CFG_PATH))["Det"]
    # Frames arrive already scaled to TextParams.side; "max" keeps the detector from rescaling them.
    return TextDetector({**cfg, "limit_type": "max", "limit_side_len": 10_000})


def text_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(height, width) with the long side at `side`, aspect kept: small frames are enlarged so
    overlay text reaches the detector's working size, large ones shrunk to save time."""
    s = side / max(width, height)
    return max(32, round(height * s)), max(32, round(width * s))


def text_area(frame: np.ndarray) -> float:
    """Union of detected text boxes / frame area, for one uint8 (H, W, 3) RGB frame."""
    boxes, _ = detector()(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if boxes is None or len(boxes) == 0:
        return 0.0
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(b).astype(np.int32) for b in boxes], 1)
    return float(mask.mean())


def clip_text_area(frames: np.ndarray | list[np.ndarray]) -> float:
    """Max over the given frames (first, middle, last): see the module docstring for why max."""
    return max(text_area(f) for f in frames)
