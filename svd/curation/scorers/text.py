"""Text score: share of the frame covered by text, from a text detector (paper App. C).

The paper uses CRAFT; here the PP-OCRv4 detection model that ships inside the rapidocr-onnxruntime
wheel, so it runs offline. Only the detector runs (no recognition): the filter needs where text is,
not what it says. Boxes are rasterised and unioned, so overlapping boxes are not counted twice.

Of the first, middle and last frame the score is the MAXIMUM, not the mean: the filter exists to
drop clips with prominent text, and a title on screen in only one of three frames is still in the
clip; a mean would let it through at a third of its size.

On a GPU (`device: cuda`, or `auto` where there is one) the detector runs through onnxruntime's
CUDA provider, which the onnxruntime-gpu wheel brings (the default install is CPU-only): asking for
CUDA without it is an error, never a silent fall back to the CPU.

Frames are scaled so their long side is `side` (320 px) before detection. On the synthetic corpus
480 and 640 px cost 2-3x the time and found more false text in plain shapes (a lone square reads as
the character 口), while 320 px still puts 2% overlays under 3% and 14% ones over 11%. A smaller
source is never scaled up: 128x96 to 320x240 is 6x the detector's time for pixels that were not
there, and what the filter drops still shows at the source's size (the synthetic corpus's 12-16%
overlays read 0.16-0.17 at 128x96; its 2-3% ones read at most 0.04, mostly 0).
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import Field

from svd.curation.models import LOADS
from svd.curation.scorers.base import ClipFrames, Column, Device, Frames, Pick, ScorerParams


class TextParams(ScorerParams):
    frames: tuple[Pick, ...] = Field(default=("first", "middle", "last"), min_length=1)
    side: int = Field(default=320, ge=32)  # long side of the frames the detector sees, px
    device: Device = "cpu"  # cpu | cuda | auto: onnxruntime's CUDA provider (onnxruntime-gpu)

    def key(self) -> dict[str, Any]:
        """`auto` as the device it resolves to: a cache shared by a GPU and a CPU machine keeps
        their numbers apart."""
        return super().key() | {"device": onnx_device(self.device)}


class Text:
    name: ClassVar[str] = "text"
    Params = TextParams
    columns: ClassVar[dict[str, Column]] = {
        "text_area": Column("largest share of a picked frame covered by detected text boxes", 0.0, 1.0)
    }

    def __init__(self, params: TextParams) -> None:
        self.p = params

    def frames(self) -> Frames:
        return Frames(picks=self.p.frames, long_side=self.p.side, upscale=False)

    def score(self, clip: ClipFrames) -> dict[str, float]:
        device = onnx_device(self.p.device)
        return {"text_area": max(text_area(f, device) for f in clip.frames)}


def onnx_device(device: Device) -> str:
    """cpu or cuda for onnxruntime, which has CUDA only as the onnxruntime-gpu wheel's provider."""
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise RuntimeError(
            "text.device: cuda, but onnxruntime has no CUDA provider here (install onnxruntime-gpu;"
            " auto falls back to cpu)"
        )
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


@cache
def detector(device: str = "cpu") -> Any:
    """The ONNX session on `device`, built once per process (loading it costs far more than one
    frame)."""
    import onnxruntime
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml, update_model_path

    onnxruntime.set_default_logger_severity(3)
    cfg = update_model_path(read_yaml(DEFAULT_CFG_PATH))["Det"]
    # One intra-op thread: parallelism comes from the runner's workers, and N workers x 2 threads on
    # 2 cores spin. Frames arrive already at `side`; "max" keeps the detector from rescaling them.
    LOADS["text"] += 1
    return TextDetector(
        {
            **cfg,
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
            "limit_type": "max",
            "limit_side_len": 10_000,
            "use_cuda": device == "cuda",
        }
    )


def text_area(frame: np.ndarray, device: str = "cpu") -> float:
    """Union of detected text boxes / frame area, for one uint8 (H, W, 3) RGB frame."""
    boxes, _ = detector(device)(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if boxes is None or len(boxes) == 0:
        return 0.0
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(b).astype(np.int32) for b in boxes], 1)
    return float(mask.mean())
