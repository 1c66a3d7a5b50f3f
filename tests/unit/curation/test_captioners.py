"""The paper's three captioners with tiny random models saved in transformers' formats (GIT for the
image and the video captioner, a Llama for the summary): the loading code real weights go through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from svd.curation.curate import curate
from svd.curation.models import LOADS
from svd.curation.scorers import captioners
from svd.curation.scorers.base import ClipFrames, pick_frame
from svd.curation.scorers.captioners import Captioners, CaptionersParams
from svd.curation.tiny_models import save_random_captioner, save_random_llm
from svd.media.synth import make_corpus
from svd.params import CurateParams, SynthParams

FRAMES = 4  # the tiny video captioner's


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("captioners")
    return {
        "image": save_random_captioner(d / "image"),
        "video": save_random_captioner(d / "video", frames=FRAMES, seed=1),
        "summary": save_random_llm(d / "llm"),
    }


def flat(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (72, 128, 3)).copy()


def clip(*colours: tuple[int, int, int]) -> ClipFrames:
    return ClipFrames([flat(c) for c in colours], 2.0, 128, 72)


def test_fraction_picks_are_the_frames_their_share_of_the_clip_falls_in() -> None:
    middles = [(i + 0.5) / 6 for i in range(6)]
    assert [pick_frame(f, 10, 17) for f in middles] == [10, 11, 12, 14, 15, 16]  # 7 frames: all distinct
    assert [pick_frame(f, 0, 31) for f in middles] == [2, 7, 12, 18, 23, 28]  # evenly spaced
    assert (pick_frame(0.0, 5, 9), pick_frame(1.0, 5, 9), pick_frame("middle", 5, 9)) == (5, 8, 7)


def test_each_captioner_reads_its_frames_and_the_summary_reads_both(models: dict[str, str]) -> None:
    p = CaptionersParams(**models, video_frames=FRAMES, max_new_tokens=8)
    s = Captioners(p)
    assert s.frames().picks == ("middle", 0.125, 0.375, 0.625, 0.875)  # the middles of 4 equal parts
    red, green, blue = (200, 30, 30), (30, 200, 30), (30, 30, 200)
    base = clip(red, red, green, blue, blue)  # the picks: the middle frame, then the video's four
    video_changed = clip(red, green, green, blue, blue)
    middle_changed = clip(blue, red, green, blue, blue)
    got = s.score_many([base, video_changed, middle_changed])
    assert all(c and c.strip() for row in got for c in row.values())  # every caption says something
    assert got[1]["caption_image"] == got[0]["caption_image"] != got[2]["caption_image"]
    assert got[2]["caption_video"] == got[0]["caption_video"] != got[1]["caption_video"]
    assert len({g["caption_summary"] for g in got}) == 3
    # the same words again, alone or in a batch, from a new instance (greedy decoding)
    assert Captioners(p).score(base) == got[0]


def test_unconfigured_captioners_invent_nothing(models: dict[str, str]) -> None:
    s = Captioners(CaptionersParams(summary=models["summary"]))
    assert s.frames().fps is None and not s.frames().picks  # nothing decoded for them
    assert s.score_many([clip((1, 2, 3))]) == [dict.fromkeys(Captioners.columns)]  # nothing to summarise
    image_only = Captioners(CaptionersParams(image=models["image"], max_new_tokens=4)).score(clip((1, 2, 3)))
    assert image_only["caption_image"] and image_only["caption_video"] is None


def test_curation_keeps_every_caption_with_its_source(models: dict[str, str], tmp_path: Path) -> None:
    raw = make_corpus(SynthParams(out=tmp_path / "raw", videos=2, segments=(2, 2), text_fraction=0.0), seed=3)
    p = CurateParams(
        sources=(str(raw),),
        out=str(tmp_path / "out"),
        cache=str(tmp_path / "cache"),
        scorers={"motion": {}, "captioners": dict(models, video_frames=FRAMES, max_new_tokens=6)},
    )
    captioners.captioner.cache_clear()  # as a fresh worker process
    captioners.llm.cache_clear()
    loads = LOADS["captioner"], LOADS["llm"]
    table = curate(p)
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 4
    for column in Captioners.columns:
        assert ok[column].notna().all() and (ok[column].str.len() > 0).all(), column
    assert (ok["caption_source"] == "sidecar").all() and (ok["caption"] != "").all()  # the source's, kept
    assert (LOADS["captioner"] - loads[0], LOADS["llm"] - loads[1]) == (2, 1)  # image + video, once each
    assert curate(p).equals(table)  # from the cache, the same words
