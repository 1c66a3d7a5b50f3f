"""The fan-out of annotation: tasks of a few source videos each on the task runner `curate.runner`
names, local worker processes or Ray (a cluster at `curate.ray_address`, or a local Ray with
`curate.workers` CPUs). Each worker is a long-lived process, so a scorer's model loads once per
worker.

A module of its own because every worker imports it: it imports Prefect and svd.curation only, not
MLflow, the training stack or pandas, so a worker starts in about 2 s rather than 3.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import nullcontext
from typing import Any

from prefect import flow, task, unmapped
from prefect.task_runners import ProcessPoolTaskRunner

from svd import storage
from svd.curation.annotate import VideoResult, annotate_video
from svd.params import CurateParams

log = logging.getLogger(__name__)
LOCAL_RAY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def task_runner(p: CurateParams) -> Any:  # a TaskRunner; Prefect's generics do not unify
    if p.runner == "ray":
        if not p.ray_address:
            # A local Ray runs in its single-machine mode (its default on macOS and Windows): its
            # node address is loopback, so every process it starts listens on 127.0.0.1 only, not
            # on all interfaces. Ray reads this when it loads, which prefect_ray defers to first use.
            if LOCAL_RAY not in os.environ and "ray._private.ray_constants" in sys.modules:
                log.warning(
                    "Ray loaded before %s was set: this local Ray listens on all interfaces", LOCAL_RAY
                )
            os.environ.setdefault(LOCAL_RAY, "0")
        from prefect_ray import RayTaskRunner

        if p.ray_address:
            return RayTaskRunner(address=p.ray_address)
        # A local Ray: no dashboard, one CPU per worker; logs stay in the driver's terminal.
        return RayTaskRunner(
            init_kwargs={"num_cpus": p.workers, "include_dashboard": False, "log_to_driver": False}
        )
    return ProcessPoolTaskRunner(max_workers=p.workers)


def tasks(videos: dict[str, int], per_task: int) -> list[list[str]]:
    """Videos (URI -> bytes) in tasks of at most `per_task`, of about equal bytes, the largest first.
    A task costs Prefect about 0.1 s of a worker and a few events for its server, as much as
    annotating a 10-s clip: one task per video of a corpus of short clips would spend a sixth of
    the run on it and load the server with a task run per clip. Bytes stand in for decoding work:
    dealt largest first, back and forth over the tasks, they even the tasks out, so that no long
    task starts when the others are nearly done."""
    n = -(-len(videos) // per_task)
    out: list[list[str]] = [[] for _ in range(n)]
    for i, v in enumerate(sorted(videos, key=lambda v: (-videos[v], v))):
        lap, j = divmod(i, n)
        out[j if lap % 2 == 0 else n - 1 - j].append(v)
    return sorted(out, key=lambda task: -sum(videos[v] for v in task))


def videos_per_task(p: CurateParams, n: int, slots: int) -> int:
    """`curate.videos_per_task`, or when 0 a quarter of each of `slots` parallel tasks' share of `n`
    videos, so that each slot gets up to four tasks to even out; at most 16, so that the UI shows
    progress and a retried task redoes little (a retry finds its finished videos in the cache)."""
    if p.videos_per_task:
        return p.videos_per_task
    return max(1, min(16, -(-n // (4 * slots))))


def slots(p: CurateParams) -> int:
    """Tasks that run at once: the local workers, or what the Ray cluster has room for (its CPUs,
    or its GPUs / `gpus_per_video`); `curate.workers` does not size a cluster that is already up."""
    if p.runner != "ray":
        return p.workers
    import ray

    total = ray.cluster_resources()
    room = total.get("GPU", 0) / p.gpus_per_video if p.gpus_per_video else total.get("CPU", 1)
    return max(1, int(room))


def task_name() -> str:
    from prefect.runtime import task_run

    videos = task_run.parameters["videos"]
    more = f" +{len(videos) - 1}" if len(videos) > 1 else ""
    return f"curate-{storage.name(videos[0])}{more}"


@task(name="curate", task_run_name=task_name, retries=1, retry_delay_seconds=2)
def annotate_task(videos: list[str], p: CurateParams) -> list[VideoResult]:
    return [annotate_video(v, p) for v in videos]


@flow(name="curate-videos")
def annotate_videos(p: CurateParams) -> list[VideoResult]:
    from svd.curation.curate import start, videos  # here: the workers import this module, and pandas
    # (the table's) would add a third of a second to each one's start

    start(p)
    found = videos(p)
    per_task = videos_per_task(p, len(found), slots(p))  # Ray is up: the flow's task runner started it
    with gpu_share(p):
        futures = annotate_task.map(tasks(found, per_task), unmapped(p))
    return [r for f in futures for r in f.result()]


def gpu_share(p: CurateParams) -> Any:  # a context manager
    """On Ray, each task (its videos one at a time) asks for `gpus_per_video` of a GPU, so Ray packs
    1 / that many tasks onto each GPU and sets CUDA_VISIBLE_DEVICES for them. Ray would start a fresh
    process for every GPU task (max_calls=1 is its default for them), loading each model once per
    task: max_calls=0 keeps the workers, and their models, across tasks."""
    if p.runner != "ray" or not p.gpus_per_video:
        return nullcontext()
    from prefect_ray.context import remote_options

    return remote_options(num_gpus=p.gpus_per_video, max_calls=0)
