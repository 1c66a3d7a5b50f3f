"""Evaluation of the Stage III model on held-out clips."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.common import link_mlflow, run_name, run_tags
from svd import params, stages


@task
def evaluate_model(params_path: str) -> dict:
    return stages.evaluate(params.load(params_path), run_tags())


@flow(name="evaluate", flow_run_name=run_name, log_prints=True)
def evaluate(params_path: str = "params.yaml") -> dict:
    metrics = evaluate_model(params_path)
    create_table_artifact([{"metric": k, "value": v} for k, v in metrics.items()], key="evaluation")
    link_mlflow("evaluate")
    return metrics
