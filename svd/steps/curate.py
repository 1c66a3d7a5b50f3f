"""curate: cuts, clips and scores for every source video, packed into WebDataset shards and the
clip table."""

from __future__ import annotations

import mlflow

from svd import tracking  # side output
from svd.curation.annotate import VideoResult
from svd.curation.checks import check_clips
from svd.curation.curate import curate as curate_videos
from svd.curation.curate import write_outputs
from svd.params import Params


def curate(p: Params, tags: tracking.Tags = None, results: list[VideoResult] | None = None) -> dict[str, int]:
    """The table is validated before anything downstream reads it. `results` are the per-video
    results when a runner already annotated the videos (the Prefect flow fans out); else this
    process does."""
    about = "Cut every source video into clips, score them, write the shards and the clip table."
    with tracking.run("curate", p, tags, about):
        if results is None:
            table = curate_videos(p.curate, p.seed)
        else:
            table = write_outputs(results, p.curate, p.seed)
        check_clips(table)
        counts = {"videos": int(table["video"].nunique())}
        counts |= {s: int((table["status"] == s).sum()) for s in ("ok", "failed", "empty", "duplicate")}
        mlflow.log_metrics({f"curate.{k}": v for k, v in counts.items()})
    return counts
