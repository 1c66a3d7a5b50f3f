"""great_expectations suites: pass on good tables, fail with a report that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from svd.curation.checks import CheckFailed, check_clips, check_subset
from svd.curation.filter import make_subsets
from svd.params import FilterParams, Rule

# The session corpus's clips are 1-2.5 s: HQ without the default 2 s floor, so that it is not empty.
HQ = {"motion_score": Rule(drop_lowest=0.5), "text_area": Rule(max=0.02)}


def test_subsets_of_the_curated_corpus_pass(synth_table: pd.DataFrame) -> None:
    p = FilterParams(hq=HQ)
    for name, df in make_subsets(synth_table, p).items():
        check_subset(name, df, p)


def test_the_suites_become_a_data_docs_site_failures_included(
    synth_table: pd.DataFrame, tmp_path: Path
) -> None:
    p = FilterParams(hq=HQ)
    subsets = make_subsets(synth_table, p)
    check_clips(synth_table, tmp_path)
    check_subset("lvd", subsets["lvd"], p, tmp_path)
    bad = subsets["lvd_f"].copy()
    bad.loc[bad.index[0], "text_area"] = 0.5
    with pytest.raises(CheckFailed):
        check_subset("lvd_f", bad, p, tmp_path)
    index = (tmp_path / "index.html").read_text()
    for suite in ("clips", "subset:lvd", "subset:lvd_f"):
        assert suite in index
    pages = list((tmp_path / "validations").rglob("*.html"))
    assert len(pages) == 3
    failed = next(f.read_text() for f in pages if "subset:lvd_f" in str(f))
    assert "text_area" in failed and "Failed" in failed


def test_text_inside_lvd_f_is_reported(synth_table: pd.DataFrame) -> None:
    p = FilterParams()
    lvd_f = make_subsets(synth_table, p)["lvd_f"].copy()
    lvd_f.loc[lvd_f.index[0], "text_area"] = 0.5
    with pytest.raises(CheckFailed) as e:
        check_subset("lvd_f", lvd_f, p)
    report = str(e.value)
    assert "subset:lvd_f" in report and "failed 1 of" in report
    assert "text_area" in report and "0.5" in report and "max_value=0.07" in report


def test_motion_below_the_recorded_threshold_is_reported(synth_table: pd.DataFrame) -> None:
    p = FilterParams(hq=HQ)
    hq = make_subsets(synth_table, p)["hq"].copy()
    hq.loc[hq.index[0], "motion_score"] = 0.0
    with pytest.raises(CheckFailed, match="motion_score"):
        check_subset("hq", hq, p)
    hq.attrs = {}
    with pytest.raises(CheckFailed, match="no recorded bounds"):
        check_subset("hq", hq, p)


def test_bad_clip_table_report_names_every_problem(synth_table: pd.DataFrame) -> None:
    bad = synth_table.copy()
    bad.loc[0, "status"] = "weird"
    bad.loc[1, "motion_score"] = None
    bad.loc[2, "clip"] = bad.loc[3, "clip"]
    bad.loc[4, "text_area"] = 1.5
    bad = bad.drop(columns=["caption"])
    with pytest.raises(CheckFailed) as e:
        check_clips(bad)
    lines = str(e.value).splitlines()
    assert lines[0].startswith("great_expectations suite 'clips' failed")
    for needle in (
        "status",
        "'weird'",
        "motion_score",
        "expect_column_values_to_be_unique(column=clip",
        "1.5",
        "expect_column_to_exist(column=caption): no such column",
    ):
        assert any(needle in line for line in lines[1:]), needle


def test_a_table_without_ok_rows_fails(synth_table: pd.DataFrame) -> None:
    failed = synth_table.head(2).assign(status="failed", error="x.mp4: cannot open")
    with pytest.raises(CheckFailed, match="status"):
        check_clips(failed)
    with pytest.raises(CheckFailed, match="expect_table_row_count_to_be_between"):
        check_subset("lvd", failed.iloc[:0].assign(split=pd.Series(dtype="string")), FilterParams())
