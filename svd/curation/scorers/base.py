"""The contract every scorer keeps: which columns it adds, which frames it needs, and `score`.

A scorer is one file in this package defining one class that satisfies `Scorer` (one that runs a
model may also define `score_many(clips)`, which annotation calls with all of a video's clips, so
the model batches across them). The clip table's schema, the great_expectations suites and the
filters are all derived from these declarations, so a new scorer needs no edit anywhere else: one
file here and one entry under `curate.scorers` in params.yaml.

Frames come in two kinds, because they cost differently:
- dense (`Frames.fps` set): frames every 1 / fps seconds on the video's own time axis, small
  (the decode pass that finds the cuts also makes them, so they cost no extra decoding);
- picks (`Frames.picks`): chosen frames of each clip (first, middle, last, or a fraction of the way
  through it), at any size, kept from that same pass (svd.curation.picks; a view no larger than the
  detection frame is scaled from it, a larger one is the pass's only extra work per frame), or
  fetched by seeking where the pass could not keep them. Both decode without the in-loop deblocking
  filter, so the two give the same array (skipping it moves a pixel 0.2-0.4 grey levels on average,
  no frame's mean more than 1.2, on testvideo.mp4 at 320x180 and on the synthetic corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# A frame of a clip, by name or by the fraction of the way through it: the frame that fraction of its
# duration falls in (0: the first; 1: the last).
Pick = Literal["first", "middle", "last"] | Annotated[float, Field(ge=0.0, le=1.0)]


def pick_frame(pick: Pick, start: int, end: int) -> int:
    """The frame index `pick` names in the clip [start, end)."""
    if pick == "first":
        return start
    if pick == "middle":
        return start + (end - start) // 2
    if pick == "last":
        return end - 1
    return start + min(end - start - 1, int(float(pick) * (end - start)))


Device = Literal["cpu", "auto", "cuda"]  # where a learned model runs; auto: CUDA when present


def torch_device(device: Device) -> str:
    """The torch device for a `device` param; asking for CUDA where torch sees none fails."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda, but torch sees no CUDA device here (auto falls back to cpu)")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


class ScorerParams(BaseModel):
    """Base of every scorer's params: frozen, unknown keys rejected (a typo fails at load time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def key(self) -> dict[str, Any]:
        """What the annotation cache keys the scorer's columns on."""
        return self.model_dump(mode="json")


class LearnedParams(ScorerParams):
    """Params of a scorer that runs learned models from configured weights."""

    device: Device = "cpu"  # cpu | cuda | auto (CUDA when present)
    batch: int = Field(default=64, ge=1)  # inputs per forward pass, across a video's clips

    def models(self) -> list[str]:
        """The configured models (folders or hub ids); none: the scorer leaves its columns null."""
        raise NotImplementedError

    def key(self) -> dict[str, Any]:
        """`auto` as the device it resolves to (a GPU's floats are not a CPU's, and a cache shared by
        both must keep them apart); without a model, device and batch change nothing."""
        key = super().key()
        if not self.models():
            return {k: v for k, v in key.items() if k not in ("device", "batch")}
        return key | {"device": torch_device(self.device)}


class ClipParams(LearnedParams):
    """Params of a scorer that can run CLIP."""

    model: str | None = None  # CLIP in transformers' format (folder or hub id); null: no CLIP

    def models(self) -> list[str]:
        return [self.model] if self.model else []


@dataclass(frozen=True)
class Column:
    """One table column a scorer fills; the range is what the data checks enforce on ok rows."""

    doc: str
    lo: float | None = None
    hi: float | None = None
    optional: bool = False  # null where not scored (no weights configured, no caption): never invented
    dtype: str = "float64"  # pandas dtype: a score, or "string" for a signature such as a fingerprint


@dataclass(frozen=True)
class Frames:
    """The frames a scorer sees, as uint8 RGB (H, W, 3), upright, at display aspect."""

    fps: float | None = None  # dense: one frame per 1 / fps s of the video's time axis
    picks: tuple[Pick, ...] = ()  # sparse: these frames of each clip
    short_side: int | None = None  # scale so the short side is this, or ...
    long_side: int | None = None  # ... so the long side is this
    upscale: bool = True  # False: a source smaller than that is seen at its own size
    caption: bool = False  # the clip's caption too: its cached scores are then keyed on the captions

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) for a display size, aspect kept."""
        if self.short_side is not None:
            s = self.short_side / min(width, height)
        elif self.long_side is not None:
            s = self.long_side / max(width, height)
        else:
            return height, width
        if not self.upscale:
            s = min(s, 1.0)
        return max(2, round(height * s)), max(2, round(width * s))


@dataclass(frozen=True)
class ClipFrames:
    """What `score` gets for one clip."""

    frames: list[np.ndarray]  # dense frames in time order, or the picks in `Frames.picks` order
    fps: float  # rate of dense frames (Frames.fps); the source's rate for picks
    width: int  # display size of the source
    height: int
    caption: str = ""  # the clip's caption, for a scorer whose Frames ask for it; "" when it has none


class Scorer(Protocol):
    name: ClassVar[str]  # also its params.yaml key and its module name
    Params: ClassVar[type[ScorerParams]]
    columns: ClassVar[dict[str, Column]]

    def __init__(self, params: Any) -> None: ...

    def frames(self) -> Frames: ...

    def score(
        self, clip: ClipFrames
    ) -> dict[str, Any]: ...  # values of the columns' dtypes; None: not scored
