"""Training clips streamed from the curated WebDataset shards: memory holds the batches in flight,
never the subset.

Each clip is fetched alone by its byte range in the shard (the clip table's mp4_offset / mp4_bytes;
an S3 range request when the shards are on S3) and decoded at the stage's fps and resolution by a
DataLoader worker. A step's global batch is a pure function of (seed, phase, step): which clips, and
where in each its window starts, come from a generator seeded for that step alone. So workers can
prefetch any step, a resumed run needs nothing but its step, and each rank of a data-parallel run
loads only its slice of a batch every rank knows. A stage reads only its subset's rows of the chosen
split: held-out clips never reach the optimiser.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from svd import storage
from svd.media.io import read_frames

Draw = tuple[int, float, float]  # (clip index, window position in [0, 1), caption choice in [0, 1))

# The paper's draw among a clip's three generated captions (svd.curation.scorers.captioners); a clip
# with none of them keeps its source's caption ("" when it has none).
CAPTIONS = {"caption_image": 0.5, "caption_video": 0.25, "caption_summary": 0.25}


def caption_choices(rows: pd.DataFrame) -> list[tuple[list[str], np.ndarray]]:
    """Per clip, its captions to draw from and their cumulative probabilities: the generated ones it
    has, weighted as the paper and renormalised, else its source's."""

    def column(name: str) -> list:
        return rows[name].tolist() if name in rows else [None] * len(rows)

    out = []
    for source, *generated in zip(column("caption"), *map(column, CAPTIONS), strict=True):
        have = [(t, w) for t, w in zip(generated, CAPTIONS.values(), strict=True) if isinstance(t, str) and t]
        if not have:
            out.append(([source if isinstance(source, str) else ""], np.ones(1)))
            continue
        weights = np.array([w for _, w in have])
        out.append(([t for t, _ in have], np.cumsum(weights) / weights.sum()))
    return out


@dataclass
class Batch:
    frames: Tensor  # (B, F, 3, H, W) in [-1, 1]; from a latent store the first frame alone (F = 1), or
    # for a text stage none (F = 0)
    fps: Tensor  # (B,)
    motion: Tensor  # (B,) the clip's curated motion score
    captions: list[str] = field(default_factory=list)  # (B,) the clip's caption, "" when it has none
    posterior: Tensor | None = None  # (B, F, 2, C, h, w): the frames' encoded Gaussian, from a latent store
    embeds: Tensor | None = None  # (B, 1, D): the first frame's CLIP embedding, from a latent store
    text: Tensor | None = None  # (B, L, D): the caption's text embedding, from a latent store

    def to(self, device: torch.device) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            frames=self.frames.to(device),
            fps=self.fps.to(device),
            motion=self.motion.to(device),
            posterior=move(self.posterior),
            embeds=move(self.embeds),
            text=move(self.text),
        )


def choose(choices: tuple[list[str], np.ndarray], u: float) -> str:
    """The caption a uniform draw `u` in [0, 1) picks from caption_choices' entry for a clip."""
    texts, cumulative = choices
    return texts[min(int(np.searchsorted(cumulative, u, side="right")), len(texts) - 1)]


class Windows(Dataset[tuple[np.ndarray, float, str]]):
    """Windows of `frames` consecutive frames at `fps` and `size` (height, width) of a subset's clips.
    Item (i, at, choice): clip i's window starting at floor(at * number of windows), its motion score
    and the caption `choice` draws among the clip's."""

    def __init__(self, curated: str, rows: pd.DataFrame, fps: float, frames: int, size: tuple[int, int]):
        self.fps, self.frames, self.size = fps, frames, size
        self.shards = [storage.join(curated, s) for s in rows["shard"]]
        self.ranges = list(zip(rows["mp4_offset"].astype(int), rows["mp4_bytes"].astype(int), strict=True))
        self.motion = rows["motion_score"].to_numpy(np.float32)
        self.captions = caption_choices(rows)
        self.keys: list[str] = rows["clip"].tolist()
        self.hashes = rows["mp4_sha256"].tolist() if "mp4_sha256" in rows else None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, draw: Draw) -> tuple[np.ndarray, float, str]:
        i, at, choice = draw
        return self.window(i, at), float(self.motion[i]), self.caption(i, choice)

    def caption(self, i: int, choice: float) -> str:
        return choose(self.captions[i], choice)

    def all_captions(self) -> list[str]:
        """Every caption a draw can give, once each, sorted."""
        return sorted({t for texts, _ in self.captions for t in texts})

    def name(self, i: int) -> str:
        return f"{self.shards[i]}: clip {self.keys[i]} at {self.fps:g} fps"

    def clip_bytes(self, i: int) -> bytes:
        return storage.read_range(self.shards[i], *self.ranges[i])

    def content_hashes(self) -> list[str]:
        if self.hashes is None:
            raise ValueError(
                "the clip table has no mp4_sha256 column (curated before it existed): curate again"
            )
        return self.hashes

    def window(self, i: int, at: float) -> np.ndarray:
        """(F, H, W, 3) uint8. The whole clip is decoded: curated clips last seconds, not minutes."""
        x = read_frames(self.clip_bytes(i), fps=self.fps, size=self.size)
        start = window_start(len(x), self.frames, at, self.name(i))
        return x[start : start + self.frames]

    def collate(self, items: list[tuple[np.ndarray, float, str]]) -> Batch:
        x = torch.from_numpy(np.stack([w for w, _, _ in items])).permute(0, 1, 4, 2, 3)  # -> (B, F, 3, H, W)
        return Batch(
            frames=x.float() / 127.5 - 1,
            fps=torch.full((len(items),), float(self.fps)),
            motion=torch.tensor([m for _, m, _ in items], dtype=torch.float32),
            captions=[t for _, _, t in items],
        )

    def fixed(self, size: int) -> Batch:
        """The first window of the first `size` clips (cycled): a deterministic evaluation batch."""
        return self.collate([self[(i % len(self), 0.0, 0.0)] for i in range(size)])


def window_start(frames_in_clip: int, frames: int, at: float, name: str) -> int:
    """Where the window at position `at` in [0, 1) starts among the clip's frames_in_clip."""
    n = frames_in_clip - frames + 1
    if n < 1:
        raise ValueError(f"{name} has {frames_in_clip} frames, fewer than one window of {frames}")
    return min(int(at * n), n - 1)


def draws(seed: int, phase: str, step: int, batch_size: int, clips: int) -> list[Draw]:
    """The global batch of one step: uniform over clips, then over window positions, then over
    caption choices."""
    key = hashlib.sha256(f"{seed}/{phase}/{step}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
    idx = torch.randint(clips, (batch_size,), generator=g).tolist()
    at = torch.rand(batch_size, generator=g, dtype=torch.float64).tolist()
    choice = torch.rand(batch_size, generator=g, dtype=torch.float64).tolist()
    return list(zip(idx, at, choice, strict=True))


def batches(
    data: Windows,
    seed: int,
    phase: str,
    first: int,
    steps: int,
    batch_size: int,
    part: slice,
    workers: int,
) -> Iterator[Batch]:
    """This rank's `part` of the global batch of every step from `first` to `steps` - 1, in order,
    decoded ahead by `workers` processes (0: in this one)."""
    plan = [draws(seed, phase, s, batch_size, len(data))[part] for s in range(first, steps)]
    loader = DataLoader(
        data,
        batch_sampler=plan,
        num_workers=workers,
        collate_fn=data.collate,
        worker_init_fn=_one_thread,
        # spawned, not forked: the parent may be a Prefect or Ray process with threads of its own,
        # whose forked copies die in the child
        multiprocessing_context="spawn" if workers else None,
    )
    yield from loader


def _one_thread(_: int) -> None:
    """A decoding worker uses one thread: the workers are the parallelism."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def load_subset(
    subsets_dir: Path,
    curated: str | Path,
    subset: str,
    split: str,
    fps: float,
    frames: int,
    size: tuple[int, int],
) -> Windows:
    """The split's clips long enough for one window at `fps` (judged by the table's duration)."""
    table = pd.read_parquet(Path(subsets_dir) / f"{subset}.parquet")
    rows = table[(table["split"] == split) & (np.ceil(table["seconds"] * fps - 1e-6) >= frames)]
    if rows.empty:
        raise ValueError(
            f"{subsets_dir}/{subset}.parquet: no {split} clip has {frames} frames at {fps} fps "
            f"({int((table['split'] == split).sum())} rows in the split)"
        )
    return Windows(str(curated), rows.reset_index(drop=True), fps, frames, size)
