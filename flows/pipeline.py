"""The whole loop: curation -> Stage I -> Stage II -> Stage III -> evaluation -> registry, each
video stage preceded by filling its latent store when it reads one.

Each step is the same flow `dvc repro` runs for that stage; after each one the pipeline records the
stage's outputs in dvc.lock, so either door leaves `dvc status` clean.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.common import dvc_commit, run_name
from flows.curate import Step, curate
from flows.evaluate import evaluate
from flows.latents import latents
from flows.register import register
from flows.train import train
from svd.params import STAGES, load

DVC_STAGE = {"synth": "synth", "annotate": "curate", "filter": "filter"}


@flow(name="pipeline", flow_run_name=run_name, log_prints=True)
def pipeline(params_path: str = "params.yaml", synthetic: bool = True) -> dict:
    summary: dict = {}
    steps: list[Step] = ["synth", "annotate", "filter"] if synthetic else ["annotate", "filter"]
    summary["curate"] = {}
    for step in steps:  # one at a time: each step's inputs must be in dvc.lock for its lineage tags
        summary["curate"] |= curate(params_path, [step])
        dvc_commit(DVC_STAGE[step])
    for stage in STAGES:
        if load(params_path).stage(stage).latents is not None:
            summary[f"latents_{stage}"] = latents(stage, params_path)
            dvc_commit(f"latents_{stage}")
        summary[stage] = train(stage, params_path)
        dvc_commit(f"train_{stage}")
    summary["evaluate"] = evaluate(params_path)
    dvc_commit("evaluate")
    summary["register"] = register(params_path)
    dvc_commit("register")
    reg = summary["register"]
    create_markdown_artifact(
        f"Registered **{reg['name']}** v{reg['version']} ({', '.join(reg['aliases'])}); "
        f"val loss {summary['evaluate']['val_loss']:.4f}",
        key="pipeline-summary",
    )
    return summary
