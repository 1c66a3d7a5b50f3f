"""Training data streams from the shards: each window is the clip's own frames, a step's batch is a
pure function of (seed, phase, step), and neither worker processes nor ranks change it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from svd.data.clips import CAPTIONS, batches, caption_choices, choose, draws, load_subset
from svd.data.shards import read_clips
from svd.media.io import read_frames


@pytest.fixture(scope="module")
def windows(tiny_params):
    p = tiny_params
    return load_subset(p.filter.out, p.curate.out, "lvd", "train", 6, 4, (32, 32))


def test_a_window_is_its_clips_frames(tiny_params, windows) -> None:
    """Fetched alone by its byte range, a clip decodes to the frames of the clip read out of the
    whole shard, and a window is the run of them its position names."""
    table = pd.read_parquet(tiny_params.filter.out / "lvd.parquet").set_index("clip")
    picked = (0, len(windows) - 1)
    rows = table.loc[[windows.keys[i] for i in picked]].reset_index()
    for (_, mp4), i in zip(read_clips(tiny_params.curate.out, rows.itertuples()), picked, strict=True):
        frames = read_frames(mp4, fps=6, size=(32, 32))
        n = len(frames) - 4 + 1
        for at in (0.0, 0.5, 0.999):
            start = min(int(at * n), n - 1)
            assert np.array_equal(windows.window(i, at), frames[start : start + 4])


def test_batches_are_a_function_of_the_step(windows) -> None:
    plan = draws(0, "image/denoiser", 7, 6, len(windows))
    assert plan == draws(0, "image/denoiser", 7, 6, len(windows))
    assert (
        plan
        != draws(0, "image/denoiser", 8, 6, len(windows))
        != draws(1, "image/denoiser", 7, 6, len(windows))
    )
    inline = list(batches(windows, 0, "x", 2, 6, 6, slice(None), workers=0))
    ahead = list(batches(windows, 0, "x", 2, 6, 6, slice(None), workers=2))
    assert len(inline) == len(ahead) == 4
    for a, b in zip(inline, ahead, strict=True):
        assert torch.equal(a.frames, b.frames) and torch.equal(a.motion, b.motion)
    # resuming at step 4 streams exactly the batches an unbroken run gets from step 4 on
    resumed = list(batches(windows, 0, "x", 4, 6, 6, slice(None), workers=0))
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(inline[2:], resumed, strict=True))
    # two ranks' halves are the whole batch
    halves = [list(batches(windows, 0, "x", 2, 6, 6, part, workers=0)) for part in (slice(0, 3), slice(3, 6))]
    for whole, h0, h1 in zip(inline, *halves, strict=True):
        assert torch.equal(whole.frames, torch.cat([h0.frames, h1.frames]))


def test_training_draws_the_papers_captions_half_a_quarter_a_quarter() -> None:
    """Image captioner 0.5, video captioner 0.25, LLM summary 0.25 (renormalised over the ones a clip
    has); a clip with none of them keeps its source's caption."""
    rows = pd.DataFrame(
        {
            "caption": ["source a", "source b", None],
            "caption_image": ["image a", None, None],
            "caption_video": ["video a", None, None],
            "caption_summary": ["summary a", "summary b", None],
        }
    )
    choices = caption_choices(rows)
    counts: dict[str, int] = {}
    for step in range(500):
        for i, _, u in draws(0, "video/denoiser", step, 8, 1):
            text = choose(choices[i], u)
            counts[text] = counts.get(text, 0) + 1
    total = sum(counts.values())
    assert set(counts) == {"image a", "video a", "summary a"}  # never the source's, when generated ones exist
    for column, p in CAPTIONS.items():
        assert abs(counts[column.replace("caption_", "") + " a"] / total - p) < 0.03
    assert {choose(choices[1], u) for u in (0.0, 0.5, 0.99)} == {"summary b"}
    assert {choose(choices[2], u) for u in (0.0, 0.5, 0.99)} == {""}
