"""Encode a stage's clips once into its latent store, so the stage's steps skip the frozen encoders."""

from __future__ import annotations

from prefect import flow, task

from flows.common import link_mlflow, run_name, run_tags
from svd import params, stages
from svd.params import StageName


@task
def fill_store(params_path: str, stage: StageName) -> dict[str, int]:
    return stages.latents(params.load(params_path), stage, run_tags())


@flow(name="latents", flow_run_name=run_name, log_prints=True)
def latents(stage: StageName = "video", params_path: str = "params.yaml") -> dict[str, int]:
    counts = fill_store(params_path, stage)
    link_mlflow(f"latents-{stage}")
    return counts
