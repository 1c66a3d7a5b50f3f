"""Bad input through the whole curation run: every nasty file is processed or becomes one row whose
error names the file and the reason, every other video goes on, and the run completes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from svd.curation.checks import check_clips
from svd.curation.curate import curate
from svd.media.hostile import make_hostile_corpus
from svd.params import CurateParams


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, pd.DataFrame]:
    root = tmp_path_factory.mktemp("hostile")
    expect = make_hostile_corpus(root / "src")
    table = curate(
        CurateParams(sources=(str(root / "src"),), out=str(root / "out"), cache=str(root / "cache"))
    )
    return root / "src", expect, table


def test_every_file_gets_its_outcome_and_a_reason(hostile: tuple[Path, dict, pd.DataFrame]) -> None:
    src, expect, table = hostile
    assert set(table["video"]) == {str(src / name) for name in expect}  # no file lost, none invented
    # the same bytes twice: the first in source order keeps the clips, the other is a duplicate row
    first, second = sorted([str(src / "plain.mp4"), str(src / "dup/plain.mp4")])
    assert set(table[table["video"] == first]["status"]) == {"ok"}
    dup = table[table["video"] == second]
    assert dup["status"].tolist() == ["duplicate"] and first in dup["error"].iloc[0]
    for name, e in expect.items():
        rows = table[table["video"] == str(src / name)]
        statuses = set(rows["status"])
        if str(src / name) == second:
            continue
        if e.outcome == "ok":
            assert statuses == {"ok"}, (name, rows["error"].tolist())
        else:
            assert len(rows) == 1 and statuses == {e.outcome}, (name, rows["status"].tolist())
            error = rows["error"].iloc[0]
            assert str(src / name) in error and e.reason in error, (name, error)
    check_clips(table)


def test_display_size_and_keys_survive_odd_sources(hostile: tuple[Path, dict, pd.DataFrame]) -> None:
    src, _, table = hostile
    ok = table[table["status"] == "ok"].set_index("video")
    assert (ok.loc[str(src / "anamorphic.mp4"), ["width", "height"]] == [128, 96]).all()  # 64x96 at SAR 2:1
    assert (ok.loc[str(src / "4k.mp4"), ["width", "height"]] == [3840, 2160]).all()
    assert ok["clip"].str.fullmatch(r"[A-Za-z0-9_-]+").all() and ok["clip"].str.len().max() < 80
