"""Precision, recall and F1 of scene transitions against a ground truth, per video and in total.

Ground truth files (the synthetic corpus's ground_truth.json, tests/data/media_cuts.json for the
shared real videos) share one shape: {"videos": {name: {"transitions": [{start, end, kind}]}}}, a
name with no suffix standing for <name>.mp4. `svd cuts-score` and bench/cuts.py print the tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from svd.curation.scenes import Transition, detect
from svd.params import CutParams

MEDIA_TRUTH = Path(__file__).resolve().parents[2] / "tests" / "data" / "media_cuts.json"


@dataclass(frozen=True)
class Score:
    hits: int  # true transitions matched by a found one (one to one)
    found: int
    truth: int

    @property
    def precision(self) -> float:
        return self.hits / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.hits / self.truth if self.truth else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(self.hits + other.hits, self.found + other.found, self.truth + other.truth)


def _gap(a: Transition, b: Transition) -> int:
    """Frames between two spans, 0 when they touch or overlap (a cut is the empty span at its frame)."""
    return max(0, b.start - a.end, a.start - b.end)


def score(truth: list[Transition], found: list[Transition], tolerance: int = 2) -> Score:
    """One-to-one matching, each true transition taking the nearest free found one. A hard cut
    matches a found transition at most `tolerance` frames away (a cut within that of its frame, or a
    gradual one within that of its span); a fade or dissolve matches a found transition whose span
    overlaps its own once each is widened by `tolerance` frames on both sides."""
    free = list(found)
    hits = 0
    for t in truth:
        reach = tolerance if t.kind == "cut" else 2 * tolerance - 1
        near = [f for f in free if _gap(t, f) <= reach]
        if near:
            free.remove(min(near, key=lambda f: _gap(t, f)))
            hits += 1
    return Score(hits, len(found), len(truth))


def load_truth(path: Path, folder: Path | None = None) -> dict[Path, list[Transition]]:
    """{video file: its true transitions}; the videos lie in `folder`, by default beside the file."""
    folder = path.parent if folder is None else folder
    videos = json.loads(path.read_text())["videos"]
    return {
        folder / (name if Path(name).suffix else f"{name}.mp4"): [Transition(**t) for t in v["transitions"]]
        for name, v in videos.items()
    }


def score_videos(truth: dict[Path, list[Transition]], p: CutParams, tolerance: int = 2) -> dict[str, Score]:
    """Detect on every video of `truth` and score it: {file name: score}."""
    return {video.name: score(t, detect(video, p)[0], tolerance) for video, t in truth.items()}


def table(title: str, scores: dict[str, Score]) -> str:
    """Per-video and total counts, precision, recall and F1, one line each."""
    rows = [f"{title:30s} {'found':>5s} {'truth':>5s} {'hits':>4s} {'prec':>6s} {'recall':>6s} {'F1':>6s}"]
    for name, s in [*scores.items(), ("total", sum(scores.values(), Score(0, 0, 0)))]:
        counts = f"{s.found:5d} {s.truth:5d} {s.hits:4d}"
        rows.append(f"  {name:28s} {counts} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f}")
    return "\n".join(rows)
