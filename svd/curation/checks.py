"""Data tests: great_expectations suites on the clip table and on each subset.

They run after curation and after filtering (the flow's gates), and fail with a report a person can
act on: the suite, every failed expectation with its column and a few offending values. GX is
imported inside the functions because importing it costs seconds; the context is ephemeral and
analytics stay off unless the caller turned them on. Given a folder, the results also become a GX
Data Docs site there (the filter step's report keeps one, with the clip table's suite and each
subset's).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from svd.curation import scorers
from svd.curation.filter import SUBSETS, groups
from svd.curation.table import BASE, REQUIRED, STATUSES
from svd.params import FilterParams

OK = 'status=="ok"'
NOT_OK = 'status!="ok"'


class CheckFailed(Exception):
    """A suite failed; the message is the readable report."""


def _gx() -> tuple[Any, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def _validate(suite_name: str, df: pd.DataFrame, expectations: list[Any], docs: Path | None = None) -> None:
    """Run the suite on `df`; raise CheckFailed with a readable report if it fails. With `docs`, the
    result also goes into the Data Docs site in that folder (one index for every suite run with it)."""
    gx, _ = _gx()
    ctx = _context(str(docs) if docs else None)
    source = ctx.data_sources.add_or_update_pandas(suite_name)
    definition = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    if docs is None:
        result = definition.get_batch(batch_parameters={"dataframe": df}).validate(suite)
    else:
        from great_expectations.checkpoint import UpdateDataDocsAction

        validation = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=definition, suite=suite)
        )
        checkpoint = ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[validation],
                actions=[UpdateDataDocsAction(name="docs")],
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": df})
        result = next(iter(run.run_results.values()))
    if not result.success:
        raise CheckFailed(_report(suite_name, result, len(df)))


@lru_cache(maxsize=2)  # the in-memory one, and the one of the Data Docs folder being written
def _context(docs: str | None) -> Any:
    """An in-memory context (no analytics, no progress bars in logs), one per docs folder so that
    its site's index lists every suite validated into it."""
    gx, _ = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    if docs is not None:
        ctx.add_data_docs_site(
            "svd",
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return ctx


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


def check_clips(table: pd.DataFrame, docs: Path | None = None) -> None:
    """Schema (base columns plus the scorers' own), statuses, each scorer's declared ranges on ok
    rows, unique clip keys, a reason on every row that is not ok."""
    _, gxe = _gx()
    columns = {c: col for c, col in scorers.columns().items() if c in table.columns}
    ex: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in [*BASE, *columns]]
    ex += [
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)),
        gxe.ExpectColumnDistinctValuesToContainSet(column="status", value_set=["ok"]),  # >= 1 ok row
        gxe.ExpectColumnValuesToBeUnique(column="clip", row_condition=OK, condition_parser="pandas"),
        gxe.ExpectColumnValuesToNotBeNull(column="error", row_condition=NOT_OK, condition_parser="pandas"),
    ]
    for c in [*REQUIRED, *(c for c, col in columns.items() if not col.optional)]:
        ex.append(gxe.ExpectColumnValuesToNotBeNull(column=c, row_condition=OK, condition_parser="pandas"))
    ranges = [(c, col.lo, col.hi, False) for c, col in columns.items() if (col.lo, col.hi) != (None, None)]
    ranges += [
        ("seconds", 0, None, True),
        ("fps", 0, None, True),
        ("frames", 1, None, False),
        ("width", 1, None, False),
        ("height", 1, None, False),
        ("start_frame", 0, None, False),
    ]
    for c, lo, hi, strict in ranges:
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
    _validate("clips", table, ex, docs)


def check_subset(name: str, df: pd.DataFrame, p: FilterParams, docs: Path | None = None) -> None:
    """Non-empty, only ok clips, the subset's own bounds hold, valid splits (both, from 2 clips on).

    Percentile bounds depend on the annotated set, so they cannot be recomputed from the subset
    alone: they come from the attrs make_subsets recorded."""
    if name not in SUBSETS:
        raise ValueError(f"unknown subset {name!r}")
    _, gxe = _gx()
    ex: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnToExist(column="split"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val"]),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["ok"]),
        gxe.ExpectColumnValuesToBeUnique(column="clip"),
    ]
    required = [c for c, col in scorers.columns().items() if c in df.columns and not col.optional]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in required]
    if groups(df).nunique() >= 2 and p.val_fraction > 0:  # near-duplicates share their split
        ex.append(gxe.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train", "val"]))
    if name != "lvd":
        limits = df.attrs.get("bounds")
        if limits is None:
            raise CheckFailed(f"subset '{name}': no recorded bounds (attrs['bounds']) to check")
        for column in getattr(p, name):
            lo, hi = limits[column]
            lo = None if lo is None or math.isinf(lo) or math.isnan(lo) else lo
            hi = None if hi is None or math.isinf(hi) or math.isnan(hi) else hi
            if (lo, hi) != (None, None):  # a rule skipped (not scored) bounds nothing
                ex.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=lo, max_value=hi))
    _validate(f"subset:{name}", df, ex, docs)
