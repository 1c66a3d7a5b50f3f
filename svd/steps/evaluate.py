"""evaluate: the Stage III model on held-out clips: validation loss at fixed sigmas, samples per
motion bucket, motion control, temporal consistency, first-frame fidelity, FVD when configured."""

from __future__ import annotations

import mlflow

from svd import tracking  # side output
from svd.evaluate.run import evaluate as run_evaluation
from svd.params import Params


def evaluate(p: Params, tags: tracking.Tags = None) -> dict:
    about = (
        "Evaluate the Stage III model: validation loss at fixed sigmas, samples per motion bucket,"
        " motion control, temporal consistency, first-frame fidelity, FVD when configured."
    )
    with tracking.run("evaluate", p, tags, about):
        metrics = run_evaluation(p, p.train.finetune.out, p.filter.out, p.curate.out)
        mlflow.log_metrics(tracking.finite(metrics))
        mlflow.log_artifacts(str(p.evaluate.out / "samples"), "samples")  # the generated videos
        mlflow.log_artifact(str(p.evaluate.out / "metrics.json"))
    return metrics
