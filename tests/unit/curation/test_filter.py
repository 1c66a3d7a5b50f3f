"""Subsets and splits on hand-made tables, where the right answer follows from the definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from svd.curation.filter import make_subsets, split_hash, write_subsets
from svd.curation.scorers.fingerprint import encode
from svd.curation.table import to_table
from svd.params import FilterParams, Rule


def table(n: int = 20, seed: int = 0) -> pd.DataFrame:
    """No aesthetics: as a run without CLIP weights configured writes it (null columns)."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "video": "v.mp4",
            "clip": f"v-{i:04d}",
            "status": "ok",
            "motion_score": float(i),
            "text_area": float(rng.choice([0.0, 0.01, 0.05, 0.2])),
            "seconds": float(rng.uniform(1, 4)),
            "fingerprint": encode("thumb", rng.normal(size=192)),  # nothing alike: no near-duplicates
        }
        for i in range(n)
    ]
    rows += [{"video": "bad.mp4", "clip": "bad", "status": "failed", "error": "bad.mp4: cannot open"}]
    return to_table(rows, ["motion", "text", "aesthetics", "fingerprint"])


def test_paper_filters() -> None:
    t, p = table(), FilterParams()
    s = make_subsets(t, p)
    ok = t[t["status"] == "ok"]
    assert set(s["lvd"]["clip"]) == set(ok["clip"])
    # 25% of 20 clips is 5: the five least moving go, then everything with more than 7% text
    least = set(ok.nsmallest(5, "motion_score")["clip"])
    want = set(ok["clip"]) - least - set(ok[ok["text_area"] > 0.07]["clip"])
    assert set(s["lvd_f"]["clip"]) == want
    half = set(ok.nsmallest(10, "motion_score")["clip"])
    hq = {c for c in want - half if ok.set_index("clip").loc[c, "text_area"] <= 0.02}
    hq = {c for c in hq if ok.set_index("clip").loc[c, "seconds"] >= 2.0}
    assert set(s["hq"]["clip"]) == hq
    assert s["lvd_f"].attrs["bounds"]["motion_score"][0] == pytest.approx(
        np.quantile(ok["motion_score"], 0.25)
    )
    assert s["lvd_f"].attrs["bounds"]["text_area"][1] == 0.07
    # no CLIP weights: those two rules are skipped and say so, no score is made up
    assert s["lvd_f"].attrs["not_scored"] == ["aesthetic_score", "caption_similarity"]
    assert s["lvd_f"]["aesthetic_score"].isna().all()


def test_the_clip_scores_filter_as_the_paper_and_a_clip_without_caption_passes() -> None:
    t = table()
    ok = t["status"] == "ok"
    t.loc[ok, "aesthetic_score"] = np.linspace(1, 10, ok.sum())
    sim = np.linspace(-0.2, 0.6, ok.sum())
    sim[-4:] = np.nan  # four of the most aesthetic clips have no caption to compare with
    t.loc[ok, "caption_similarity"] = sim
    p = FilterParams(
        lvd_f={"aesthetic_score": Rule(drop_lowest=0.25), "caption_similarity": Rule(drop_lowest=0.5)}
    )
    got = make_subsets(t, p)["lvd_f"]
    lvd = t[ok]
    aesthetic = lvd["aesthetic_score"] >= np.quantile(lvd["aesthetic_score"], 0.25)
    scored = lvd["caption_similarity"].dropna()
    similar = lvd["caption_similarity"].isna() | (lvd["caption_similarity"] >= np.quantile(scored, 0.5))
    assert set(got["clip"]) == set(lvd[aesthetic & similar]["clip"])
    assert got["caption_similarity"].isna().sum() == 4  # not scored is not dropped
    assert got.attrs["not_scored"] == []


def test_a_rule_on_any_column_and_on_the_high_tail() -> None:
    t = table()
    p = FilterParams(lvd_f={"seconds": Rule(drop_highest=0.5), "motion_score": Rule(min=3.0, max=15.0)})
    got = make_subsets(t, p)["lvd_f"]
    ok = t[t["status"] == "ok"]
    short = ok["seconds"] <= np.quantile(ok["seconds"], 0.5)
    assert set(got["clip"]) == set(ok[short & ok["motion_score"].between(3, 15)]["clip"])
    with pytest.raises(KeyError, match="aesthetic"):
        make_subsets(t, FilterParams(lvd_f={"aesthetic": Rule(min=5.0)}))


def test_split_is_per_clip_and_the_same_in_every_subset() -> None:
    s = make_subsets(table(200), FilterParams(val_fraction=0.2))
    split = dict(zip(s["lvd"]["clip"], s["lvd"]["split"], strict=True))
    for df in s.values():
        assert set(df["split"]) == {"train", "val"}
        assert all(split[c] == v for c, v in zip(df["clip"], df["split"], strict=True))
    assert 0.12 < (s["lvd"]["split"] == "val").mean() < 0.28
    assert (
        make_subsets(table(200), FilterParams(val_fraction=0.2))["lvd"]["split"].tolist()
        == s["lvd"]["split"].tolist()
    )
    assert all(
        (split_hash(c) < 0.2) == (v == "val") for c, v in split.items() if c not in s["hq"]["clip"].values
    )


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_every_subset_of_two_or_more_gets_both_splits(fraction: float) -> None:
    s = make_subsets(table(12), FilterParams(val_fraction=fraction, lvd_f={}, hq={}))
    for name, df in s.items():
        if len(df) >= 2:
            assert set(df["split"]) == {"train", "val"}, name
    assert (make_subsets(table(12), FilterParams(val_fraction=0.0))["lvd"]["split"] == "train").all()


def test_write_subsets(tmp_path: Path) -> None:
    s = make_subsets(table(), FilterParams())
    write_subsets(s, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for name, df in s.items():
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert back["clip"].tolist() == df["clip"].tolist()
        assert {k: list(v) for k, v in back.attrs["bounds"].items()} == {
            k: list(v) for k, v in df.attrs["bounds"].items()
        }
        assert summary[name]["clips"] == len(df)
        assert summary[name]["train"] + summary[name]["val"] == len(df)
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]


def test_no_ok_clips_gives_empty_subsets(tmp_path: Path) -> None:
    t = table()
    s = make_subsets(t[t["status"] == "failed"], FilterParams())
    assert all(df.empty for df in s.values())
    write_subsets(s, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["hq"]["clips"] == 0


def test_the_report_counts_what_each_rule_dropped_and_draws_the_thresholds() -> None:
    from svd import report

    t, p = table(), FilterParams()
    s = make_subsets(t, p)
    rows = {
        (r["subset"], r["rule"].split(" ")[0]): r
        for r in report.rule_counts(s, {"lvd_f": "lvd", "hq": "lvd_f"})
    }
    lvd = s["lvd"]
    # each rule alone, on the subset it filters: the 5 least moving of 20, and the clips over 7% text
    assert rows["lvd_f", "motion_score"]["dropped_by_rule"] == 5
    assert rows["lvd_f", "text_area"]["dropped_by_rule"] == int((lvd["text_area"] > 0.07).sum())
    assert rows["lvd_f", "motion_score"]["kept"] == len(s["lvd_f"])
    assert rows["lvd_f", "motion_score"]["dropped"] == len(lvd) - len(s["lvd_f"])
    assert rows["hq", "seconds"]["dropped_by_rule"] == int((s["lvd_f"]["seconds"] < 2.0).sum())
    assert rows["lvd_f", "aesthetic_score:"]["rule"] == "aesthetic_score: not scored, rule skipped"
    assert rows["lvd_f", "aesthetic_score:"]["dropped_by_rule"] == 0
    png = report.histograms(lvd, s)
    assert png.startswith(b"\x89PNG") and report.histograms(lvd, s) == png  # the same table, the same bytes
    curve = report.loss_curve([1.0, 0.5, 0.4, 0.3], "loss")
    assert curve.startswith(b"\x89PNG")


def test_the_report_shows_frames_of_what_each_rule_dropped(synth_table, curate_params) -> None:
    """Per rule, clips it drops, from its least to its most extreme value; their middle frames come
    from the shards into one picture."""
    import io

    from PIL import Image

    from svd import report

    subsets = make_subsets(synth_table, FilterParams())
    picks = report.dropped(subsets, {"lvd_f": "lvd", "hq": "lvd_f"}, per_rule=3)
    assert [t.split(" in ")[0] for t, _ in picks] == [
        "lvd_f: aesthetic_score: not scored, rule skipped",  # no CLIP weights in the tests: said so
        "lvd_f: caption_similarity: not scored, rule skipped",
        "lvd_f: motion_score",
        "lvd_f: text_area",
        "lvd_f: near_duplicate_of: a copy of a clip kept (filter.near_duplicates)",
        "hq: motion_score",
        "hq: seconds",
        "hq: text_area",
    ]
    for title, df in picks:
        subset, column = title.split(" in ")[0].split(": ")[:2]
        parent = {"lvd_f": "lvd", "hq": "lvd_f"}[subset]
        base = subsets[parent]
        if column == "near_duplicate_of":
            assert set(df["clip"]) <= set(base[base[column].notna()]["clip"])
            continue
        lo, hi = subsets[subset].attrs["bounds"][column]
        failing = base[(base[column] < lo) | (base[column] > hi)]
        assert set(df["clip"]) <= set(failing["clip"]) and len(df) == min(3, len(failing)), title
        if len(failing):
            assert (
                df[column].iloc[0] == failing[column].min() and df[column].iloc[-1] == failing[column].max()
            )
    png = report.dropped_examples(picks, curate_params.out)
    image = Image.open(io.BytesIO(png))
    assert image.width > 300 and image.height > 8 * 100, image.size
