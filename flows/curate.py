"""Curation: synthetic corpus (optional) -> annotate every source video -> filter into subsets.

Annotation fans out one task per source video on the task runner `curate.runner` names: local
worker processes, or Ray (a cluster at `curate.ray_address`, or a local Ray with `curate.workers`
CPUs). Each worker is a long-lived process, so a scorer's model loads once per worker. The shards
and the clip table are then packed in source order, so every runner gives the same bytes.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ProcessPoolTaskRunner

from flows.common import link_mlflow, run_tags
from svd import params, stages
from svd.curation.annotate import VideoResult, annotate_video
from svd.curation.curate import start, videos
from svd.params import CurateParams

Step = Literal["synth", "annotate", "filter"]


def task_runner(p: CurateParams) -> Any:  # a TaskRunner; Prefect's generics do not unify
    if p.runner == "ray":
        from prefect_ray import RayTaskRunner

        if p.ray_address:
            return RayTaskRunner(address=p.ray_address)
        # A local Ray: no dashboard, one CPU per worker; logs stay in the driver's terminal.
        return RayTaskRunner(
            init_kwargs={"num_cpus": p.workers, "include_dashboard": False, "log_to_driver": False}
        )
    return ProcessPoolTaskRunner(max_workers=p.workers)


@task
def synth(params_path: str) -> str:
    return str(stages.synth(params.load(params_path)))


@task(retries=1, retry_delay_seconds=2)
def annotate_one(video: str, p: CurateParams) -> VideoResult:
    return annotate_video(video, p)


@flow(name="annotate-videos")
def annotate_videos(p: CurateParams) -> list[VideoResult]:
    start(p)
    futures = annotate_one.map(videos(p), unmapped(p))
    return [f.result() for f in futures]


@task
def pack(params_path: str, results: list[VideoResult]) -> dict[str, int]:
    return stages.annotate(params.load(params_path), run_tags(), results)


@task
def filter_clips(params_path: str) -> dict[str, int]:
    return stages.filter_clips(params.load(params_path), run_tags())


@flow(name="curate", log_prints=True)
def curate(params_path: str = "params.yaml", steps: list[Step] = ["synth", "annotate", "filter"]) -> dict:  # noqa: B006
    out: dict = {}
    if "synth" in steps:
        out["corpus"] = synth(params_path)
    if "annotate" in steps:
        p = params.load(params_path).curate
        out["clips"] = pack(params_path, annotate_videos.with_options(task_runner=task_runner(p))(p))
    if "filter" in steps:
        out["subsets"] = filter_clips(params_path)
        create_table_artifact([{"subset": k, "clips": v} for k, v in out["subsets"].items()], key="subsets")
    link_mlflow("curate")
    return out
