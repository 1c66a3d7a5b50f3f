"""One training flow for the three stages: the stage is a parameter, its config lives in params.yaml."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import link_mlflow, run_name, run_tags
from svd import params, stages
from svd.params import StageName


@task
def train_stage(params_path: str, stage: StageName) -> tuple[dict, list[float]]:
    r = stages.train(params.load(params_path), stage, run_tags())
    return {k: v for k, v in vars(r).items() if k != "losses"}, r.losses


@flow(name="train", flow_run_name=run_name, log_prints=True)
def train(stage: StageName = "image", params_path: str = "params.yaml") -> dict:
    result, losses = train_stage(params_path, stage)
    create_markdown_artifact(
        f"### Stage {stage}\n\n| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items()),
        key=f"train-{stage}",
    )
    every = max(len(losses) // 100, 1)  # the curve in at most about 100 rows; MLflow has every step
    create_table_artifact(
        [
            {"step": i + 1, "loss": round(x, 5)}
            for i, x in enumerate(losses)
            if i % every == 0 or i == len(losses) - 1
        ],
        key=f"train-{stage}-loss",
        description=f"Stage {stage}: training loss (the MLflow run has every step and the curve as a PNG)",
    )
    link_mlflow(f"train-{stage}")
    return result
