"""filter: percentile filters over the clip table -> the LVD, LVD-F and HQ subsets."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from svd import report, tracking  # side output
from svd.curation import scorers
from svd.curation.checks import check_clips, check_subset
from svd.curation.filter import make_subsets, write_subsets
from svd.params import Params
from svd.storage import join, read_bytes


def filter(p: Params, tags: tracking.Tags = None) -> dict[str, Any]:
    """Every subset must pass its suite before any is written. Returns the clips per subset and, per
    rule, the clips it dropped. The MLflow run also keeps each score's histogram with its thresholds,
    frames of the clips each rule dropped, and the suites' results as a GX Data Docs site."""
    table_path = join(p.curate.out, "clips.parquet")
    about = "Filter the clip table into the LVD, LVD-F and HQ subsets, each validated."
    parents = {"lvd_f": "lvd", "hq": "lvd_f"}
    with tracking.run("filter", p, tags, about), tempfile.TemporaryDirectory() as docs:
        table = pd.read_parquet(io.BytesIO(read_bytes(table_path)))
        subsets = make_subsets(table, p.filter)
        try:
            check_clips(table, Path(docs))  # passed in curate already: here for the Data Docs site
            for name, df in subsets.items():
                check_subset(name, df, p.filter, Path(docs))
        finally:  # a failed suite's page is the one to read
            mlflow.log_artifacts(docs, "report/data-docs")
        write_subsets(subsets, p.filter.out)
        counts = {name: len(df) for name, df in subsets.items()}
        mlflow.log_metrics({f"clips.{k}": v for k, v in counts.items()})
        rules = report.rule_counts(subsets, parents)
        mlflow.log_table(pd.DataFrame(rules), "report/rules.json")
        scores = [c for c, col in scorers.columns().items() if col.dtype == "float64" and c in table]
        tracking.log_bytes(report.histograms(subsets["lvd"], subsets, scores), "report/scores.png")
        tracking.log_bytes(
            report.dropped_examples(report.dropped(subsets, parents), p.curate.out), "report/dropped.png"
        )
    return {"clips": counts, "rules": rules}
