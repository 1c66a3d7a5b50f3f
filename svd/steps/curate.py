"""curate: cuts, clips and scores for every source video, packed into WebDataset shards and the
clip table."""

from __future__ import annotations

from collections.abc import Callable

import mlflow

from svd import tracking  # side output
from svd.curation.annotate import VideoResult
from svd.curation.checks import check_clips
from svd.curation.curate import curate as curate_videos
from svd.curation.curate import write_outputs
from svd.params import CurateParams, Params


def curate(
    p: Params, tags: tracking.Tags = None, fan_out: Callable[[CurateParams], list[VideoResult]] | None = None
) -> dict[str, int]:
    """The table is validated before anything downstream reads it. `fan_out` annotates every
    source video on a runner (the Prefect flow's: worker processes or Ray) and returns their
    results; without one this process annotates them in turn. Either way inside the step's MLflow
    run, whose duration and system metrics are then the whole step's."""
    about = "Cut every source video into clips, score them, write the shards and the clip table."
    with tracking.run("curate", p, tags, about):
        if fan_out is None:
            table = curate_videos(p.curate, p.seed)
        else:
            table = write_outputs(fan_out(p.curate), p.curate, p.seed)
        check_clips(table)
        counts = {"videos": int(table["video"].nunique())}
        counts |= {s: int((table["status"] == s).sum()) for s in ("ok", "failed", "empty", "duplicate")}
        mlflow.log_metrics({f"curate.{k}": v for k, v in counts.items()})
    return counts
