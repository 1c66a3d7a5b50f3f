"""Fingerprint: what a clip looks like, compactly, so that re-encoded, rescaled or cropped copies of
the same footage can be found across videos (svd.curation.duplicates; the filter keeps one).

Of the middle frame, as an L2-normalised vector compared by cosine:
- `thumb` (no model configured): the central 80% of the frame at 8x8 in colour, less its mean, a
  perceptual signature that brightness and contrast changes leave alone. On the synthetic corpus it
  keeps copies cropped by 6% a side within 0.25 of their source and different scenes more than 0.4
  apart (tests/unit/curation/test_duplicates.py checks both). Tried first and dropped: a 64-bit
  DCT hash (pHash), whose bits a 3% crop flipped as often as a change of scene did, and a grey
  thumbnail, which put two scenes of one video 0.22 apart;
- `clip` (`model` names a CLIP, as aesthetics.model): its image embedding, which also matches copies
  a thumbnail misses (heavy crops, colour grading, overlays).
Stored as text, `<kind>:<base64 of float16>`, so the table says which kind it holds and two kinds
are never compared.
"""

from __future__ import annotations

import base64
from typing import ClassVar

import cv2
import numpy as np

from svd.curation.models import one_torch_thread
from svd.curation.scorers.base import ClipFrames, ClipParams, Column, Frames, torch_device


class FingerprintParams(ClipParams):  # model null: a thumbnail
    pass


class Fingerprint:
    name: ClassVar[str] = "fingerprint"
    Params = FingerprintParams
    columns: ClassVar[dict[str, Column]] = {
        "fingerprint": Column("middle frame: thumb:<base64 float16> or clip:<base64 float16>", dtype="string")
    }

    def __init__(self, params: FingerprintParams) -> None:
        self.p = params

    def frames(self) -> Frames:
        return Frames(picks=("middle",), short_side=224 if self.p.model else 64)

    def score(self, clip: ClipFrames) -> dict[str, str]:
        return self.score_many([clip])[0]

    def score_many(self, clips: list[ClipFrames]) -> list[dict[str, str]]:
        if self.p.model is None or not clips:
            return [{"fingerprint": encode("thumb", thumbnail(c.frames[0]))} for c in clips]
        import torch

        from svd.curation.scorers.aesthetics import embed_images, load

        model, processor, _ = load(self.p.model, torch_device(self.p.device))
        with one_torch_thread(), torch.inference_mode():
            e = embed_images(model, processor, [c.frames[0] for c in clips], self.p.batch)
        return [{"fingerprint": encode("clip", v.cpu().numpy())} for v in e]


def thumbnail(frame: np.ndarray, keep: float = 0.8, side: int = 8) -> np.ndarray:
    """The central `keep` of an RGB frame at side x side x 3, zero mean and unit norm."""
    h, w = frame.shape[:2]
    dy, dx = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    centre = np.ascontiguousarray(frame[dy : h - dy, dx : w - dx])
    x = cv2.resize(centre, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    x -= x.mean()
    return x / max(float(np.linalg.norm(x)), 1e-6)  # a flat frame stays all zeros: close to nothing


def encode(kind: str, vector: np.ndarray) -> str:
    """A fingerprint as the clip table stores it: `<kind>:<base64 of float16>`."""
    return f"{kind}:" + base64.b64encode(vector.astype(np.float16).tobytes()).decode()


def decode(fingerprint: str) -> tuple[str, np.ndarray]:
    kind, data = fingerprint.split(":", 1)
    return kind, np.frombuffer(base64.b64decode(data), np.float16).astype(np.float32)
