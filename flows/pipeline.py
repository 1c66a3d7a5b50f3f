"""The whole loop: curation -> Stage I -> Stage II -> Stage III -> evaluation -> registry, each
video stage preceded by filling its latent store when it reads one.

Each step is the same flow `dvc repro` runs for that stage, and runs only when `dvc status` says
its stage changed; after each one the pipeline records the stage's outputs in dvc.lock. So either
door recomputes the same steps and leaves `dvc status` clean: a second run with nothing changed
runs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.common import dvc_commit, run_name, up_to_date
from flows.curate import Step, curate
from flows.evaluate import evaluate
from flows.latents import latents
from flows.register import register
from flows.train import train
from svd.params import STAGES, load

DVC_STAGE = {"synth": "synth", "annotate": "curate", "filter": "filter"}


def step(dvc_stage: str, run: Callable[[], dict]) -> dict:
    """Run one step unless DVC has its outputs already; then record them in dvc.lock. One at a time:
    each step's inputs must be in dvc.lock for its lineage tags."""
    if up_to_date(dvc_stage):
        print(f"{dvc_stage}: up to date, not run")
        return {"up_to_date": True}
    out = run()
    dvc_commit(dvc_stage)
    return out


@flow(name="pipeline", flow_run_name=run_name, log_prints=True)
def pipeline(params_path: str = "params.yaml", synthetic: bool = True) -> dict:
    summary: dict = {}
    steps: list[Step] = ["synth", "annotate", "filter"] if synthetic else ["annotate", "filter"]
    for s in steps:
        summary[DVC_STAGE[s]] = step(DVC_STAGE[s], partial(curate, params_path, [s]))
    p = load(params_path)
    for stage in STAGES:
        if p.stage(stage).latents is not None:
            summary[f"latents_{stage}"] = step(f"latents_{stage}", partial(latents, stage, params_path))
        summary[stage] = step(f"train_{stage}", partial(train, stage, params_path))
    summary["evaluate"] = step("evaluate", partial(evaluate, params_path))
    summary["register"] = step("register", partial(register, params_path))
    ran = [k for k, v in summary.items() if not v.get("up_to_date")]
    reg = json.loads(Path(p.registry.out).read_text())  # what register wrote, now or before
    create_markdown_artifact(
        f"Ran {', '.join(ran) or 'nothing: every step was up to date'}. "
        f"Registered **{reg['name']}** v{reg['version']} ({', '.join(reg['aliases'])}).",
        key="pipeline-summary",
    )
    return summary
