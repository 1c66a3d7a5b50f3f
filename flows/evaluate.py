"""Evaluation of the Stage III model on held-out clips."""

from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import artifact_url, link_mlflow, run_name, run_tags
from flows.forms import EvaluateForm, override
from svd import params
from svd.steps.evaluate import evaluate as evaluate_step


@task(name="evaluate")
def evaluate_task(params_path: str) -> dict:
    return evaluate_step(params.load(params_path), run_tags())


@flow(name="evaluate", flow_run_name=run_name, log_prints=True)
def evaluate(evaluate: EvaluateForm = EvaluateForm(), params_path: str = "params.yaml") -> dict:  # noqa: B008
    """Evaluate the Stage III model on held-out clips: validation loss, motion control, samples,
    temporal consistency, first-frame fidelity, and FVD when an I3D TorchScript is configured.

    Args:
        evaluate: Evaluation settings for this run; empty fields keep params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, evaluate=evaluate)
    metrics = evaluate_task(params_path)
    create_table_artifact([{"metric": k, "value": v} for k, v in metrics.items()], key="evaluation")
    runs = link_mlflow("evaluate")
    out = params.load(params_path).evaluate.out
    rows = []
    for r in pd.read_csv(out / "samples.csv").itertuples():
        video = f"{out}/samples/{r.sample}"  # served by the tracking server when there is one
        if runs:
            video = f"[{r.sample}]({artifact_url(runs[0], f'samples/{r.sample}')})"
        rows.append(f"| {video} | {r.bucket} | {r.motion:.3f} |")
    create_markdown_artifact(
        "| sample | motion bucket asked | motion measured |\n|---|---|---|\n" + "\n".join(rows),
        key="evaluation-samples",
        description="Each sample video with the motion it was asked for and the motion it shows",
    )
    return metrics
