"""register: the Stage III model into the MLflow registry, alias candidate, champion if every gate
passes. Its output names the version, so the registry (and tracking) are what it computes with."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import mlflow

from svd import registry, tracking
from svd.params import Params

log = logging.getLogger("svd")


def samples_page() -> str | None:
    """The latest evaluation run's sample videos, for the model card: the run that wrote the
    metrics.json this step reads, when the steps run in order."""
    runs = mlflow.search_runs(
        experiment_names=[f"{tracking.EXPERIMENT}/evaluate"],
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return tracking.run_page(runs[0].info.experiment_id, runs[0].info.run_id, "samples") if runs else None


def training_inputs(p: Params) -> dict[str, str]:
    """The md5 (DVC's file hash) of each subset Stage III's phases read, for the model card: its
    rows name every clip by content (mp4_sha256), so the hash pins the training data. The stage's
    settings are among the run's params (dvc.yaml declares train.finetune)."""
    subsets = sorted({ph.subset for ph in p.train.finetune.schedule()})
    return {
        f"md5 {p.filter.out / f'{s}.parquet'}": tracking.md5_file(p.filter.out / f"{s}.parquet")
        for s in subsets
    }


def register(p: Params, tags: tracking.Tags = None) -> dict:
    model, metrics_path = p.train.finetune.out, p.evaluate.out / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    about = "Register the Stage III model; champion if every gate passes."
    with tracking.run("register", p, tags, about) as run_id:
        mlflow.log_metrics(tracking.finite(metrics))
        reg = registry.register(
            model,
            p.register.name,
            metrics,
            p.register.gates,
            run_id,
            p.register.margins,
            samples_page(),
            training_inputs(p),
        )
    out = asdict(reg) | {"tracking_uri": tracking.tracking_uri()}
    p.register.out.parent.mkdir(parents=True, exist_ok=True)
    p.register.out.write_text(json.dumps(out, indent=2))
    log.info("registered %s version %s with aliases %s", reg.name, reg.version, reg.aliases)
    return out
