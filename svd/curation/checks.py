"""Data tests: great_expectations suites on the clip table and on each subset.

They run after curation and after filtering (the flow's gates), and fail with a report a person can
act on: the suite, every failed expectation with its column and a few offending values. GX is
imported inside the functions because importing it costs seconds; the context is ephemeral (nothing
written to disk) and analytics stay off unless the caller turned them on.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from svd.curation.annotate import COLUMNS
from svd.params import FilterParams

OK = 'status=="ok"'
FAILED = 'status=="failed"'


class CheckFailed(Exception):
    """A suite failed; the message is the readable report."""


def _gx() -> tuple[Any, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def _validate(suite_name: str, df: pd.DataFrame, expectations: list[Any]) -> None:
    gx, _ = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(  # in memory, no docs site, no analytics, no progress bars in logs
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    batch = (
        ctx.data_sources.add_pandas("svd")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": df})
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_name))
    for e in expectations:
        suite.add_expectation(e)
    result = batch.validate(suite)
    if not result.success:
        raise CheckFailed(_report(suite_name, result, len(df)))


def _report(suite_name: str, result: Any, rows: int) -> str:
    failed = [r for r in result.results if not r.success]
    lines = [
        f"great_expectations suite '{suite_name}' failed {len(failed)} of {len(result.results)} "
        f"expectations on {rows} rows:"
    ]
    for r in failed:
        cfg = r.expectation_config
        kw = {
            k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "condition_parser") and v is not None
        }
        if isinstance(kw.get("row_condition"), dict):
            kw["row_condition"] = kw["row_condition"].get("pass_through_filter")
        args = ", ".join(f"{k}={v}" for k, v in kw.items())
        res, info = r.result or {}, r.exception_info or {}
        # exception_info is flat, or keyed by metric when a metric failed (e.g. a missing column)
        errors = [i for i in (info, *info.values()) if isinstance(i, dict) and i.get("raised_exception")]
        if errors:
            detail = f"raised: {errors[0].get('exception_message')}"
        elif cfg.type == "expect_column_to_exist":
            detail = "no such column"
        elif "unexpected_count" in res:
            detail = (
                f"{res['unexpected_count']} of {res.get('element_count')} rows unexpected, "
                f"e.g. {res.get('partial_unexpected_list', [])[:5]}"
            )
        else:
            detail = f"observed {res.get('observed_value')}"
        lines.append(f"  - {cfg.type}({args}): {detail}")
    return "\n".join(lines)


def check_clips(table: pd.DataFrame) -> None:
    """Schema, statuses, score ranges of ok rows, unique clip keys, a reason on every failed row."""
    _, gxe = _gx()
    ex: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in COLUMNS]
    ex += [
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "failed"]),
        gxe.ExpectColumnDistinctValuesToContainSet(column="status", value_set=["ok"]),  # >= 1 ok row
        gxe.ExpectColumnValuesToBeUnique(column="clip", row_condition=OK, condition_parser="pandas"),
        gxe.ExpectColumnValuesToNotBeNull(column="error", row_condition=FAILED, condition_parser="pandas"),
    ]
    for c in (
        "clip",
        "path",
        "start_frame",
        "end_frame",
        "fps",
        "width",
        "height",
        "frames",
        "motion_score",
        "text_area",
        "caption",
        "caption_source",
        "reencoded",
    ):
        ex.append(gxe.ExpectColumnValuesToNotBeNull(column=c, row_condition=OK, condition_parser="pandas"))
    for c, lo, hi, strict in (
        ("motion_score", 0, None, False),
        ("text_area", 0, 1, False),
        ("seconds", 0, None, True),
        ("fps", 0, None, True),
        ("frames", 1, None, False),
        ("width", 1, None, False),
        ("height", 1, None, False),
        ("start_frame", 0, None, False),
    ):
        ex.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=c,
                min_value=lo,
                max_value=hi,
                strict_min=strict,
                row_condition=OK,
                condition_parser="pandas",
            )
        )
    ex += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="end_frame", column_B="start_frame", row_condition=OK, condition_parser="pandas"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="caption_source",
            value_set=["sidecar", "none"],
            row_condition=OK,
            condition_parser="pandas",
        ),
    ]
    _validate("clips", table, ex)


def check_subset(name: str, df: pd.DataFrame, p: FilterParams, min_motion_score: float | None = None) -> None:
    """Non-empty, only ok clips, the subset's own limits hold, valid splits (both, from 2 clips on).

    The motion limit is a percentile of the annotated set, so it cannot be recomputed from the subset
    alone: it comes from `min_motion_score` or, by default, from the attrs make_subsets recorded.
    """
    _, gxe = _gx()
    ex: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnToExist(column="split"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val"]),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["ok"]),
        gxe.ExpectColumnValuesToBeUnique(column="clip"),
        gxe.ExpectColumnValuesToNotBeNull(column="motion_score"),
        gxe.ExpectColumnValuesToNotBeNull(column="text_area"),
    ]
    if len(df) >= 2 and p.val_fraction > 0:
        ex.append(gxe.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train", "val"]))
    limits = {"lvd_f": (p.max_text_area, None), "hq": (p.hq.max_text_area, p.hq.min_seconds)}
    if name in limits:
        max_text, min_seconds = limits[name]
        ex.append(gxe.ExpectColumnValuesToBeBetween(column="text_area", min_value=0, max_value=max_text))
        if min_seconds is not None:
            ex.append(gxe.ExpectColumnValuesToBeBetween(column="seconds", min_value=min_seconds))
        threshold = min_motion_score if min_motion_score is not None else df.attrs.get("min_motion_score")
        if threshold is None:
            raise CheckFailed(f"subset '{name}': no motion threshold (attrs['min_motion_score']) to check")
        if not pd.isna(threshold):
            ex.append(gxe.ExpectColumnValuesToBeBetween(column="motion_score", min_value=float(threshold)))
    elif name != "lvd":
        raise ValueError(f"unknown subset {name!r}")
    _validate(f"subset:{name}", df, ex)
