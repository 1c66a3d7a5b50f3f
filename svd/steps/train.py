"""train: one of the paper's three stages (Stage I, II or III), the stage a parameter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import mlflow
from tqdm import tqdm

from svd import report, tracking  # side output
from svd.params import Params, StageName
from svd.train import distributed
from svd.train.loop import StageResult, train_stage

STAGE_TITLE = {
    "image": "Stage I (image pretraining)",
    "video": "Stage II (video pretraining)",
    "finetune": "Stage III (high-quality finetuning)",
}


def train(
    p: Params,
    stage: StageName,
    tags: tracking.Tags = None,
    progress: Callable[[int, int], None] | None = None,
) -> StageResult:
    """Under torchrun every rank trains; rank 0 alone records the MLflow run, shows a progress bar on
    a terminal and reports `progress` (denoiser steps done, of all)."""
    st = p.stage(stage)
    if not distributed.is_main():
        return train_stage(p, stage, p.filter.out, p.curate.out)
    with tqdm(desc=f"train {stage}", unit="step", disable=None) as bar:  # shown on a terminal only

        def report_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
            if progress is not None:
                progress(done, total)

        context = "captions" if st.condition == "text" else "a frame"
        about = f"Train {STAGE_TITLE[stage]}, conditioned on {context}."
        with tracking.run(f"train-{stage}", p, tags, about):
            with tracking.MLflowRecorder() as record:  # sent while training goes on
                result = train_stage(p, stage, p.filter.out, p.curate.out, record, report_progress)
            summary = {k: v for k, v in asdict(result).items() if isinstance(v, int | float)}
            mlflow.log_metrics({f"{stage}.{k}": float(v) for k, v in summary.items()})
            mlflow.log_artifact(str(Path(st.out) / "training.json"))
            tracking.log_bytes(
                report.loss_curve(result.losses, f"{STAGE_TITLE[stage]}: training loss"), "report/loss.png"
            )
            mlflow.log_table(
                {"step": list(range(1, len(result.losses) + 1)), "loss": result.losses}, "report/loss.json"
            )
    return result
