"""curate: every source video annotated (cuts, clips, scores) and packed into the shards and the
clip table.

Annotation fans out in `curate` tasks of a few source videos each (flows.annotate), inside the
step's MLflow run; the shards and the clip table are then packed in source order, so every runner
gives the same bytes.
"""

from __future__ import annotations

from prefect import flow

from flows.annotate import annotate_videos, task_runner
from flows.common import link_mlflow, run_name, run_tags
from flows.forms import CurateForm, override
from svd import params
from svd.curation.annotate import VideoResult
from svd.params import CurateParams
from svd.steps.curate import curate as curate_step


@flow(name="curate", flow_run_name=run_name, log_prints=True)
def curate(curate: CurateForm = CurateForm(), params_path: str = "params.yaml") -> dict[str, int]:  # noqa: B008
    """Cut and score every source video into WebDataset shards and the clip table.

    Args:
        curate: Sources (folders or s3:// prefixes), cut detection and scorers for this run; empty
            fields keep params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, curate=curate)

    def fan_out(p: CurateParams) -> list[VideoResult]:
        return annotate_videos.with_options(task_runner=task_runner(p))(p)

    counts = curate_step(params.load(params_path), run_tags(), fan_out)
    link_mlflow("curate")
    return counts
