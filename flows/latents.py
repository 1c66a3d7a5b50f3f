"""Encode a stage's clips once into its latent store, so the stage's steps skip the frozen encoders."""

from __future__ import annotations

from prefect import flow, task

from flows.common import link_mlflow, run_name, run_tags
from flows.forms import ModelForm, TrainForm, override
from svd import params
from svd.params import StageName
from svd.steps.latents import latents as latents_step


@task(name="latents")
def latents_task(params_path: str, stage: StageName) -> dict[str, int]:
    return latents_step(params.load(params_path), stage, run_tags())


@flow(name="latents", flow_run_name=run_name, log_prints=True)
def latents(
    stage: StageName = "video",
    train: TrainForm = TrainForm(),  # noqa: B008
    model: ModelForm = ModelForm(),  # noqa: B008
    params_path: str = "params.yaml",
) -> dict[str, int]:
    """Encode a video stage's clips (and captions) once into its latent store.

    Args:
        stage: The training stage whose store is filled: video (Stage II) or finetune (Stage III).
        train: Stage settings for this run; empty fields keep params.yaml's.
        model: Architecture and weights for this run; empty fields keep params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, train=train, model=model)
    counts = latents_task(params_path, stage)
    link_mlflow(f"latents-{stage}")
    return counts
