"""The pipeline's stages as plain functions: read params, compute, write the stage's DVC outputs,
record an MLflow run with lineage. Prefect flows and DVC stages both end up here, and so can a
notebook: nothing in this module knows about an orchestrator. `tags` carries the caller's ids
(the Prefect flow-run id) into the run.

Each DVC stage is a fresh process, so each function imports only what its stage needs: the
curation stages never pay for torch and diffusers, nor training for OpenCV and OCR."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow

from svd import report, tracking
from svd.params import Params, StageName

if TYPE_CHECKING:
    from svd.train.loop import StageResult

log = logging.getLogger("svd")
Tags = Mapping[str, str] | None


def synth(p: Params) -> Path:
    from svd.media.synth import make_corpus

    return make_corpus(p.synth, p.seed)


def annotate(p: Params, tags: Tags = None, results: list | None = None) -> dict[str, int]:
    """Cuts, clips and scores for every source video, packed into shards and the clip table; the
    table is validated before anything downstream reads it. `results` are the per-video results
    when a runner already annotated the videos (the Prefect flow fans out); else this process does."""
    from svd.curation.checks import check_clips
    from svd.curation.curate import curate, write_outputs

    sources = list(map(Path, p.curate.sources))
    about = "Cut every source video into clips, score them, write the shards and the clip table."
    with tracking.run("curate", sources, {"curate": p.curate.model_dump(mode="json")}, tags, about):
        table = curate(p.curate, p.seed) if results is None else write_outputs(results, p.curate, p.seed)
        check_clips(table)
        counts = {"videos": int(table["video"].nunique())}
        counts |= {s: int((table["status"] == s).sum()) for s in ("ok", "failed", "empty", "duplicate")}
        mlflow.log_metrics({f"curate.{k}": v for k, v in counts.items()})
    return counts


def filter_clips(p: Params, tags: Tags = None) -> dict[str, Any]:
    """Percentile filters -> LVD, LVD-F, HQ; every subset must pass its suite before any is written.
    Returns the clips per subset and, per rule, the clips it dropped; the run also keeps each
    filtered score's histogram with its thresholds."""
    import pandas as pd

    from svd import storage
    from svd.curation.checks import check_subset
    from svd.curation.filter import make_subsets, write_subsets

    table_path = storage.join(p.curate.out, "clips.parquet")
    about = "Filter the clip table into the LVD, LVD-F and HQ subsets, each validated."
    with tracking.run(
        "filter", [Path(p.curate.out)], {"filter": p.filter.model_dump(mode="json")}, tags, about
    ):
        subsets = make_subsets(pd.read_parquet(io.BytesIO(storage.read_bytes(table_path))), p.filter)
        for name, df in subsets.items():
            check_subset(name, df, p.filter)
        write_subsets(subsets, p.filter.out)
        counts = {name: len(df) for name, df in subsets.items()}
        mlflow.log_metrics({f"clips.{k}": v for k, v in counts.items()})
        rules = report.rule_counts(subsets, {"lvd_f": "lvd", "hq": "lvd_f"})
        mlflow.log_table(pd.DataFrame(rules), "report/rules.json")
        tracking.log_bytes(report.histograms(subsets["lvd"], subsets), "report/scores.png")
    return {"clips": counts, "rules": rules}


def latents(p: Params, stage: StageName, tags: Tags = None) -> dict[str, int]:
    """Encode the stage's clips once into its latent store (train.<stage>.latents)."""
    from svd.train.loop import fill_latents

    st = p.stage(stage)
    inputs = [p.filter.out, Path(p.curate.out)] + ([st.init] if st.init else [])
    about = f"Encode the {stage} stage's clips (and captions) once into its latent store {st.latents}."
    with tracking.run(
        f"latents-{stage}", inputs, {"train": {stage: st.model_dump(mode="json")}}, tags, about
    ):
        counts = fill_latents(p, stage, p.filter.out, p.curate.out)
        mlflow.log_metrics({f"latents.{k}": v for k, v in counts.items()})
    return counts


STAGE_TITLE = {
    "image": "Stage I (image pretraining)",
    "video": "Stage II (video pretraining)",
    "finetune": "Stage III (high-quality finetuning)",
}


def train(
    p: Params, stage: StageName, tags: Tags = None, progress: Callable[[int, int], None] | None = None
) -> StageResult:
    """Under torchrun every rank trains; rank 0 alone records the MLflow run and reports `progress`
    (denoiser steps done, of all)."""
    from svd.train import distributed
    from svd.train.loop import train_stage

    st = p.stage(stage)
    if not distributed.is_main():
        return train_stage(p, stage, p.filter.out, p.curate.out)
    inputs = [p.filter.out, Path(p.curate.out)] + [Path(x) for x in (st.init, st.latents) if x]
    params = {
        "train": {stage: st.model_dump(mode="json")},
        "model": {
            "preset": p.model.preset,
            "pretrained": p.model.pretrained,
            "image_encoder": p.model.image_encoder,
            **p.model.arch.model_dump(mode="json"),
        },
        "seed": p.seed,
    }
    about = (
        f"Train {STAGE_TITLE[stage]}, conditioned on {'captions' if st.condition == 'text' else 'a frame'}."
    )
    with tracking.run(f"train-{stage}", inputs, params, tags, about):
        result = train_stage(p, stage, p.filter.out, p.curate.out, tracking.MLflowRecorder(), progress)
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


def evaluate(p: Params, tags: Tags = None) -> dict:
    from svd.evaluate.run import evaluate as run_evaluation
    from svd.evaluate.run import finite

    model = p.train.finetune.out
    inputs = [model, p.filter.out, Path(p.curate.out)]
    about = "Evaluate the Stage III model: validation loss at fixed sigmas, samples per motion bucket."
    with tracking.run("evaluate", inputs, {"evaluate": p.evaluate.model_dump(mode="json")}, tags, about):
        metrics = run_evaluation(p, model, p.filter.out, p.curate.out)
        mlflow.log_metrics(finite(metrics))
        mlflow.log_artifacts(str(p.evaluate.out / "samples"), "samples")  # the generated videos
        mlflow.log_artifact(str(p.evaluate.out / "metrics.json"))
    return metrics


def register(p: Params, tags: Tags = None) -> dict:
    from svd import registry
    from svd.evaluate.run import finite

    model, metrics_path = p.train.finetune.out, p.evaluate.out / "metrics.json"
    if p.train.finetune.condition != "image":
        raise ValueError(
            "register: the registered model serves image-to-video (an image in, a video out); "
            "train.finetune.condition is text, whose model it cannot serve yet"
        )
    metrics = json.loads(metrics_path.read_text())
    params = {"registry": p.registry.model_dump(mode="json")}
    about = "Register the Stage III model; champion if every gate passes."
    with tracking.run("register", [model, metrics_path], params, tags, about) as run_id:
        mlflow.log_metrics(finite(metrics))
        reg = registry.register(model, p.registry.name, metrics, p.registry.gates, run_id)
    out = asdict(reg) | {"tracking_uri": tracking.tracking_uri()}
    p.registry.out.parent.mkdir(parents=True, exist_ok=True)
    p.registry.out.write_text(json.dumps(out, indent=2))
    log.info("registered %s version %s with aliases %s", reg.name, reg.version, reg.aliases)
    return out
