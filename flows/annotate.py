"""The fan-out of annotation: one task per source video on the task runner `curate.runner` names,
local worker processes or Ray (a cluster at `curate.ray_address`, or a local Ray with
`curate.workers` CPUs). Each worker is a long-lived process, so a scorer's model loads once per
worker.

A module of its own because every worker imports it: it imports Prefect and svd.curation only, not
MLflow, the training stack or pandas, so a worker starts in about 2 s rather than 3.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from prefect import flow, task, unmapped
from prefect.task_runners import ProcessPoolTaskRunner

from svd.curation.annotate import VideoResult, annotate_video
from svd.params import CurateParams


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


@task(name="curate", task_run_name="curate-{video}", retries=1, retry_delay_seconds=2)
def annotate_one(video: str, p: CurateParams) -> VideoResult:
    return annotate_video(video, p)


@flow(name="curate-videos")
def annotate_videos(p: CurateParams) -> list[VideoResult]:
    from svd.curation.curate import start, videos  # here: the workers import this module, and pandas
    # (the table's) would add a third of a second to each one's start

    start(p)
    with gpu_share(p):
        futures = annotate_one.map(videos(p), unmapped(p))
    return [f.result() for f in futures]


def gpu_share(p: CurateParams) -> Any:  # a context manager
    """On Ray, each video's task asks for `gpus_per_video` of a GPU, so Ray packs 1 / that many
    tasks onto each GPU and sets CUDA_VISIBLE_DEVICES for them. Ray would start a fresh process for
    every GPU task (max_calls=1 is its default for them), loading each model once per video:
    max_calls=0 keeps the workers, and their models, across videos."""
    if p.runner != "ray" or not p.gpus_per_video:
        return nullcontext()
    from prefect_ray.context import remote_options

    return remote_options(num_gpus=p.gpus_per_video, max_calls=0)
