"""Near-duplicate clips: a re-encoded and a cropped copy of a video, beside unrelated videos, curated
together; LVD-F keeps one clip of each scene's copies and every unrelated clip."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from svd import report
from svd.curation.curate import curate
from svd.curation.duplicates import near_duplicates
from svd.curation.filter import make_subsets
from svd.curation.scorers.fingerprint import decode, encode, thumbnail
from svd.media.io import encode_video, probe, read_frames
from svd.media.synth import make_corpus
from svd.params import CurateParams, FilterParams, SynthParams

COPIES = ("original", "reencoded", "cropped")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("duplicates")
    made = sorted(
        make_corpus(SynthParams(out=root / "made", videos=3, text_fraction=0.0), seed=5).glob("*.mp4")
    )
    src = root / "src"
    src.mkdir()
    for name, video in zip(["original", "other", "third"], made, strict=True):
        shutil.copy(video, src / f"{name}.mp4")
    frames, fps = read_frames(made[0]), probe(made[0]).fps
    (src / "reencoded.mp4").write_bytes(encode_video(frames, fps, crf=36))  # blockier, every byte new
    h, w = frames.shape[1:3]
    (src / "cropped.mp4").write_bytes(
        encode_video(np.ascontiguousarray(frames[:, 6 : h - 6, 8 : w - 8]), fps)
    )
    p = CurateParams(
        sources=(str(src),), out=str(root / "out"), cache=str(root / "cache"), scorers={"fingerprint": {}}
    )
    t = curate(p)
    return t[t["status"] == "ok"].reset_index(drop=True)


def scenes(t: pd.DataFrame) -> pd.Series:
    """Which scene of which footage a clip shows: its video's name (copies share one) and start."""
    name = t["video"].str.rsplit("/", n=1).str[1].str.removesuffix(".mp4")
    footage = name.where(~name.isin(COPIES), "original")
    return footage + "@" + (t["start_frame"] // 10).astype(str)  # copies cut within a few frames


def test_one_clip_of_each_scenes_copies_is_kept_and_no_unrelated_one_goes(table: pd.DataFrame) -> None:
    scene = scenes(table)
    copies = scene.str.startswith("original@")
    assert copies.sum() == 3 * scene[copies].nunique()  # each scene found in all three copies
    got = make_subsets(table, FilterParams(lvd_f={}, hq={}))
    lvd, kept = got["lvd"], got["lvd_f"]
    assert sorted(scenes(kept)) == sorted(set(scene))  # one clip per scene: copies gone, others all kept
    for _, group in lvd.assign(scene=scenes(lvd)).groupby("scene"):
        keeper = group[group["near_duplicate_of"].isna()]
        assert len(keeper) == 1 and (group["near_duplicate_of"].dropna() == keeper["clip"].iloc[0]).all()
        assert (keeper["width"] * keeper["height"]).iloc[0] == (group["width"] * group["height"]).max()
    rows = {r["rule"].split(":")[0]: r for r in report.rule_counts(got, {"lvd_f": "lvd", "hq": "lvd_f"})}
    assert rows["near_duplicate_of"]["dropped_by_rule"] == len(lvd) - len(kept) == 2 * scene[copies].nunique()
    # a copy shares its keeper's split: one in training and the other held out would leak
    assert (lvd.groupby(lvd["near_duplicate_of"].fillna(lvd["clip"]))["split"].nunique() == 1).all()
    every = make_subsets(table, FilterParams(lvd_f={}, hq={}, near_duplicates=None))["lvd_f"]
    assert len(every) == len(lvd)


def test_the_choice_does_not_depend_on_the_tables_order(table: pd.DataFrame) -> None:
    shuffled = table.sample(frac=1, random_state=1)
    assert near_duplicates(shuffled, {"thumb": 0.3}) == near_duplicates(table, {"thumb": 0.3})


def test_thumbnail_fingerprints_ignore_brightness_and_kinds_never_mix() -> None:
    frame = np.random.default_rng(0).integers(0, 200, (96, 128, 3), dtype=np.uint8)
    brighter = np.clip(frame.astype(int) * 1.1 + 20, 0, 255).astype(np.uint8)
    a, b = thumbnail(frame), thumbnail(brighter)
    assert 1 - float(a @ b) < 0.01
    kind, back = decode(encode("thumb", a))
    assert kind == "thumb" and np.allclose(back, a, atol=1e-3)
    mixed = pd.DataFrame(
        {"clip": ["a", "b"], "fingerprint": [encode("thumb", a), encode("clip", a)], "width": 1, "height": 1}
    ).assign(seconds=1.0)
    with pytest.raises(ValueError, match="different kinds"):
        near_duplicates(mixed, {"thumb": 0.3, "clip": 0.05})


def test_the_thresholds_separate_copies_from_other_scenes(table: pd.DataFrame) -> None:
    """What the default (0.3) rests on: copies of a scene are close, different scenes far apart."""
    e = np.stack([decode(f)[1] for f in table["fingerprint"]])
    d = 1 - e @ e.T
    same = scenes(table).to_numpy()
    pairs = ~np.eye(len(e), dtype=bool)
    assert d[pairs & (same[:, None] == same[None, :])].max() < 0.25
    assert d[pairs & (same[:, None] != same[None, :])].min() > 0.4
