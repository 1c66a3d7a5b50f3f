"""Motion score -> motion bucket id (0..255): the micro-conditioning through which a user asks for
an amount of motion.

The paper conditions on a motion bucket id but does not publish how its optical-flow motion scores
map to ids. Here the map is the curated training distribution's quantiles. Bucket k is the score
below which k/255 of the training clips' scores lie, so every bucket holds the same share of clips
and 127 is the median clip's motion. Scores between two quantiles interpolate linearly; scores
outside the training range clamp to 0 or 255; a score shared by many clips (a run of equal
quantiles) maps to the middle of its run.

The first video stage (Stage II) computes the map from its training clips, unless the model it
starts from already has one. The map is saved with the model as motion_buckets.json, so Stage III
and inference use the same scale: `svd generate --motion-score S` asks for the motion of a clip
that curation scored S.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

FILE = "motion_buckets.json"
BUCKETS = 256


@dataclass(frozen=True)
class MotionBuckets:
    knots: tuple[float, ...]  # ascending: knots[k] is the score at bucket k
    clips: int  # how many training clips' scores define it

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> MotionBuckets:
        finite = np.asarray(scores, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            raise ValueError("no finite motion scores to define the motion buckets from")
        return cls(tuple(np.quantile(finite, np.linspace(0, 1, BUCKETS)).tolist()), int(finite.size))

    def bucket(self, score: Tensor) -> Tensor:
        """Bucket ids (as floats, rounded) for a tensor of motion scores, on the scores' device."""
        xs, run = np.unique(np.asarray(self.knots), return_inverse=True)
        ys = np.bincount(run, weights=np.arange(BUCKETS)) / np.bincount(run)  # middle of a tied run
        if len(xs) == 1:  # every training clip scored the same
            return torch.full_like(score, float(np.round(ys[0])))
        ids = np.interp(score.detach().cpu().double().numpy(), xs, ys).round()
        return torch.from_numpy(ids).to(score.device, torch.float32)

    def save(self, folder: Path) -> None:
        (Path(folder) / FILE).write_text(json.dumps({"clips": self.clips, "knots": list(self.knots)}))

    @classmethod
    def load(cls, folder: str | Path) -> MotionBuckets | None:
        path = Path(folder) / FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(tuple(raw["knots"]), raw["clips"])
