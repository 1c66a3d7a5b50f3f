"""The whole loop: curation -> Stage I -> Stage II -> Stage III -> evaluation -> registration, each
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
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import temporary_settings

import flows.curate
import flows.evaluate
import flows.filter
import flows.latents
import flows.register
import flows.synth
import flows.train
from flows.common import dvc_commit, run_name, up_to_date
from flows.forms import (
    ConditioningForm,
    CurateForm,
    EvaluateForm,
    FilterForm,
    ModelForm,
    PoolsForm,
    RegisterForm,
    SynthForm,
    TrainForm,
    override,
)
from svd.params import STAGES, StageName, load


def step(name: str, run: Callable[[], object]) -> bool:
    """Run one step (named as its DVC stage) unless DVC has its outputs already; then record them
    in dvc.lock. One at a time: each step's inputs must be in dvc.lock for its lineage tags.
    Whether it ran."""
    if up_to_date(name):
        print(f"{name}: up to date, not run")
        return False
    # A step's flow (unless it goes to a pool) runs in this process, whose liveness the pipeline
    # run's heartbeat already reports. Its own heartbeat would cost up to a second at its end:
    # Prefect joins the heartbeat thread, which sleeps in 1-s steps (0.6 s a step on average). The
    # price: should the process die, a zombie automation marks the pipeline run Crashed, not the step.
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        run()
    dvc_commit(name)
    return True


def on_pool(stage: StageName, pool: str, params_path: str) -> None:
    """Train a stage through its deployment on a work pool (`train-<stage>-<pool>`, e.g. the GPU
    pool's, which runs torchrun), as a subflow of this run, and wait for it. Its outputs land in
    the workspace both share (the deployment's working directory)."""
    name = f"train/train-{stage}-{pool}"
    run = run_deployment(name, parameters={"stage": stage, "params_path": params_path}, timeout=None)
    assert isinstance(run, FlowRun)  # sync_compatible: a FlowRun when called from sync code
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "no state"
        raise RuntimeError(f"{name}: flow run {run.name} ended {state}, not Completed")


@flow(name="pipeline", flow_run_name=run_name, log_prints=True)
def pipeline(
    synthetic: bool = True,
    seed: int | None = None,
    synth: SynthForm = SynthForm(),  # noqa: B008
    curate: CurateForm = CurateForm(),  # noqa: B008
    filter: FilterForm = FilterForm(),  # noqa: B008
    model: ModelForm = ModelForm(),  # noqa: B008
    train: TrainForm = TrainForm(),  # noqa: B008
    conditioning: ConditioningForm = ConditioningForm(),  # noqa: B008
    evaluate: EvaluateForm = EvaluateForm(),  # noqa: B008
    register: RegisterForm = RegisterForm(),  # noqa: B008
    pools: PoolsForm = PoolsForm(),  # noqa: B008
    params_path: str = "params.yaml",
) -> list[str]:
    """The whole recipe: curate, the three training stages, evaluate, register. Runs only the steps
    whose DVC stage changed, as `dvc repro` does. The steps it ran, in order.

    Args:
        synthetic: Make the synthetic corpus first (off: curate only curate.sources).
        seed: The pipeline's seed; empty keeps params.yaml's.
        synth: Synthetic corpus settings; empty fields keep params.yaml's (so for every section).
        curate: Sources (folders or s3:// prefixes), cut detection and scorers.
        filter: Filter thresholds of the LVD-F and HQ subsets.
        model: Architecture preset and pretrained weights.
        train: The three stages' settings and how they compute.
        pools: The work pool each stage trains on (e.g. gpu), through its deployment
            train-<stage>-<pool>; empty: in this run's process.
        conditioning: Conditioning-frame noise.
        evaluate: Evaluation settings.
        register: Model name and promotion gates.
        params_path: The params file; what the form sets is written into it, as `dvc exp run -S`
            does, so `dvc repro` reproduces this run.
    """
    sections = dict(synth=synth, curate=curate, filter=filter, model=model, train=train)
    sections |= dict(conditioning=conditioning, evaluate=evaluate, register=register, pools=pools)
    override(params_path, seed=seed, **sections)
    p = load(params_path)
    steps: list[tuple[str, Callable[[], object]]] = []
    if synthetic:
        steps.append(("synth", partial(flows.synth.synth, params_path=params_path)))
    steps.append(("curate", partial(flows.curate.curate, params_path=params_path)))
    steps.append(("filter", partial(flows.filter.filter, params_path=params_path)))
    for stage in STAGES:
        if p.stage(stage).latents is not None:
            steps.append((f"latents-{stage}", partial(flows.latents.latents, stage, params_path=params_path)))
        pool = getattr(p.pools, stage)
        if pool is None:
            steps.append((f"train-{stage}", partial(flows.train.train, stage, params_path=params_path)))
        else:
            steps.append((f"train-{stage}", partial(on_pool, stage, pool, params_path)))
    steps.append(("evaluate", partial(flows.evaluate.evaluate, params_path=params_path)))
    steps.append(("register", partial(flows.register.register, params_path=params_path)))
    ran = [name for name, run in steps if step(name, run)]
    reg = json.loads(Path(p.register.out).read_text())  # what register wrote, now or before
    create_markdown_artifact(
        f"Ran {', '.join(ran) or 'nothing: every step was up to date'}. "
        f"Registered **{reg['name']}** v{reg['version']} ({', '.join(reg['aliases'])}).",
        key="pipeline-summary",
    )
    return ran
