"""The threshold ablation: one small model per annotation and cut, ranked (svd.steps.ablate)."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.common import link_mlflow, run_name, run_tags
from flows.forms import AblateForm, override
from svd import params
from svd.steps.ablate import ablate as ablate_step


@task(name="ablate")
def ablate_task(params_path: str) -> list[dict]:
    return ablate_step(params.load(params_path), run_tags()).to_dict("records")


@flow(name="ablate", flow_run_name=run_name, log_prints=True)
def ablate(ablate: AblateForm = AblateForm(), params_path: str = "params.yaml") -> list[dict]:  # noqa: B008
    """Choose the curation thresholds as the paper did: for each annotation and each cut, filter LVD
    by it alone, train an identical small model, and rank the arms by validation loss on the
    held-out clips they share.

    Args:
        ablate: Ablation settings for this run; empty fields keep params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, ablate=ablate)
    rows = ablate_task(params_path)
    create_table_artifact(
        rows, key="ablation", description="Arms ranked by validation loss (lower is better)"
    )
    link_mlflow("ablate")
    return rows
