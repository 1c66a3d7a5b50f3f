"""Curation: synthetic corpus (optional) -> annotate every source video -> filter into subsets.

Annotation fans out one task per source video (flows.annotate); the shards and the clip table are
then packed in source order, so every runner gives the same bytes.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.annotate import annotate_videos, task_runner
from flows.common import link_mlflow, run_name, run_tags
from svd import params, stages
from svd.curation.annotate import VideoResult

Step = Literal["synth", "annotate", "filter"]


@task
def synth(params_path: str) -> str:
    return str(stages.synth(params.load(params_path)))


@task
def pack(params_path: str, results: list[VideoResult]) -> dict[str, int]:
    return stages.annotate(params.load(params_path), run_tags(), results)


@task
def filter_clips(params_path: str) -> dict:
    return stages.filter_clips(params.load(params_path), run_tags())


@flow(name="curate", flow_run_name=run_name, log_prints=True)
def curate(params_path: str = "params.yaml", steps: list[Step] = ["synth", "annotate", "filter"]) -> dict:  # noqa: B006
    out: dict = {}
    if "synth" in steps:
        out["corpus"] = synth(params_path)
    if "annotate" in steps:
        p = params.load(params_path).curate
        out["clips"] = pack(params_path, annotate_videos.with_options(task_runner=task_runner(p))(p))
    if "filter" in steps:
        filtered = filter_clips(params_path)
        out["subsets"] = filtered["clips"]
        create_table_artifact([{"subset": k, "clips": v} for k, v in out["subsets"].items()], key="subsets")
        create_table_artifact(
            filtered["rules"], key="filter-rules", description="Clips each filter rule dropped"
        )
    link_mlflow("curate")
    return out
