"""latents: a video stage's clips (and captions) encoded once into its latent store, so its steps
skip the frozen encoders."""

from __future__ import annotations

import mlflow

from svd import tracking  # side output
from svd.params import Params, StageName
from svd.train.loop import fill_latents


def latents(p: Params, stage: StageName, tags: tracking.Tags = None) -> dict[str, int]:
    store = p.stage(stage).latents
    about = f"Encode the {stage} stage's clips (and captions) once into its latent store {store}."
    with tracking.run(f"latents-{stage}", p, tags, about):
        counts = fill_latents(p, stage, p.filter.out, p.curate.out)
        mlflow.log_metrics({f"latents.{k}": v for k, v in counts.items()})
    return counts
