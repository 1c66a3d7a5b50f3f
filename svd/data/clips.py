"""Training clips of one subset, read from the curated WebDataset shards, decoded once at the stage's
fps and resolution and held in memory.

The embedded profile's subsets are a few hundred kilobytes of pixels, so decoding every clip up
front and drawing random windows from RAM is the fast path here. A stage reads only its subset's
rows of the chosen split: held-out clips never reach the optimiser.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from svd.data.shards import read_clips
from svd.media.io import read_frames


@dataclass
class Batch:
    frames: Tensor  # (B, F, 3, H, W) in [-1, 1]
    fps: Tensor  # (B,)
    motion: Tensor  # (B,) the clip's curated motion score

    def to(self, device: torch.device) -> Batch:
        return Batch(self.frames.to(device), self.fps.to(device), self.motion.to(device))


@dataclass
class ClipSet:
    clips: list[np.ndarray]  # each (T, H, W, 3) uint8, T >= frames
    motion: np.ndarray  # (N,)
    keys: list[str]
    fps: float
    frames: int

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        """Random clips, each a random window of `frames` consecutive frames."""
        idx = torch.randint(len(self), (size,), generator=generator).tolist()
        windows = []
        for i in idx:
            clip = self.clips[i]
            start = int(torch.randint(len(clip) - self.frames + 1, (1,), generator=generator))
            windows.append(clip[start : start + self.frames])
        return self._to_batch(windows, idx)

    def fixed(self, size: int) -> Batch:
        """The first window of the first `size` clips (cycled): a deterministic evaluation batch."""
        idx = [i % len(self) for i in range(size)]
        return self._to_batch([self.clips[i][: self.frames] for i in idx], idx)

    def _to_batch(self, windows: list[np.ndarray], idx: list[int]) -> Batch:
        x = torch.from_numpy(np.stack(windows)).permute(0, 1, 4, 2, 3)  # (B, F, H, W, 3) -> (B, F, 3, H, W)
        return Batch(
            frames=x.float() / 127.5 - 1,
            fps=torch.full((len(idx),), float(self.fps)),
            motion=torch.from_numpy(self.motion[idx]).float(),
        )


def load_subset(
    subsets_dir: Path,
    curated: str | Path,
    subset: str,
    split: str,
    fps: float,
    frames: int,
    size: tuple[int, int],
) -> ClipSet:
    table = pd.read_parquet(Path(subsets_dir) / f"{subset}.parquet")
    table = table[table["split"] == split]
    clips: list[np.ndarray] = []
    motion: list[float] = []
    keys: list[str] = []
    for row, video in read_clips(str(curated), table.itertuples()):
        x = _decode(video, fps, size)
        if frames == 1:  # image stage: every frame is a sample
            clips.extend(x[:, None])  # (T, H, W, 3) -> T clips of one frame
            motion.extend([row.motion_score] * len(x))
            keys.extend(f"{row.clip}/{t}" for t in range(len(x)))
        elif len(x) >= frames:  # clips shorter than one window at this fps cannot be trained on
            clips.append(x)
            motion.append(row.motion_score)
            keys.append(row.clip)
    if not clips:
        raise ValueError(
            f"{subsets_dir}/{subset}.parquet: no {split} clip has {frames} frames at {fps} fps "
            f"({len(table)} rows in the split)"
        )
    return ClipSet(clips, np.asarray(motion, dtype=np.float32), keys, fps, frames)


def _decode(video: bytes, fps: float, size: tuple[int, int]) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:  # FFmpeg wants a seekable file
        f.write(video)
        f.flush()
        return read_frames(f.name, fps=fps, size=size)
