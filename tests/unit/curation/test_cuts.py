"""Cut detection against the synthetic ground truth, and the small pieces around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from svd.curation.cuts import detect_cuts, detect_scenes, detection_size, merge_cuts, trim_fades
from svd.media.io import iter_frames, probe
from svd.params import CutParams

TOLERANCE = 2  # frames


def test_cut_recall_and_precision(corpus: Path) -> None:
    truth = json.loads((corpus / "ground_truth.json").read_text())["videos"]
    p = CutParams()
    hits = detected = expected = 0
    for name, v in truth.items():
        path = corpus / f"{name}.mp4"
        cuts, _ = detect_cuts(
            iter_frames(path, size=detection_size(probe(path), p.downscale_width)), v["fps"], p
        )
        detected += len(cuts)
        expected += len(v["cuts"])
        # one-to-one matching: a detected cut may stand for one true cut only
        free = list(v["cuts"])
        for c in cuts:
            match = next((t for t in free if abs(t - c) <= TOLERANCE), None)
            if match is not None:
                free.remove(match)
                hits += 1
    recall, precision = hits / expected, hits / detected
    assert expected >= 10
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


def test_scenes_lose_their_fades(corpus: Path) -> None:
    """Fade frames are trimmed off scene ends, so no scene starts or ends on a dark frame."""
    truth = json.loads((corpus / "ground_truth.json").read_text())["videos"]
    name, v = next((n, v) for n, v in truth.items() if v["fades"])
    path = corpus / f"{name}.mp4"
    scenes = detect_scenes(path, probe(path), CutParams())
    fade = v["fades"][0]
    before = max(s for s in scenes if s[1] <= fade + TOLERANCE)
    after = min(s for s in scenes if s[0] >= fade - TOLERANCE)
    assert before[1] < fade - 2 and after[0] > fade + 2  # the dark middle belongs to neither


def test_merge_keeps_one_cut_per_event_from_the_best_detector() -> None:
    # a fade seen by the threshold (0) at 50 and the content detector (1) at 48; a lone cut at 100
    assert merge_cuts([(48, 1), (50, 0), (100, 2), (101, 1)], min_scene_len=15, frames=200) == [50, 101]
    assert merge_cuts([(0, 0), (200, 1)], min_scene_len=15, frames=200) == []  # not inside the video


def test_trim_fades_drops_dark_ends_only() -> None:
    b = np.array([0, 40, 90, 100, 100, 100, 95, 100, 60, 5], float)
    assert trim_fades([(0, 10)], b, ratio=0.85) == [(2, 8)]
    assert trim_fades([(0, 3)], np.array([5.0, 5.0, 5.0]), ratio=0.85) == [(0, 3)]  # a dark scene stays
