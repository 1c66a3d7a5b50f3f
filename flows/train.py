"""One training flow for the three stages: the stage is a parameter, its config lives in params.yaml.
On a GPU node it runs the stage under torchrun, one process per GPU."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import FlowRun, State
from prefect.events import emit_event
from pydantic import Field

from flows.common import link_mlflow, run_name, run_tags
from flows.forms import ConditioningForm, ModelForm, TrainForm, override
from svd import params
from svd.params import StageName
from svd.steps.train import train as train_step


class ProgressBar:
    """A stage's progress bar on its flow run's page, moved once a percent: not one API call a step."""

    def __init__(self, stage: StageName):
        artifact = create_progress_artifact(
            0.0, key=f"train-{stage}-progress", description=f"Stage {stage}: steps done"
        )
        assert isinstance(artifact, UUID)  # sync_compatible: a UUID when called from sync code
        self.artifact, self.shown = artifact, 0.0

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done / total
        if percent - self.shown >= 1 or done == total:
            self.shown = percent
            try:
                update_progress_artifact(self.artifact, percent)
            except Exception as e:  # the server is away: the bar lags, the stage goes on
                get_run_logger().warning(f"progress bar not moved to {percent:.0f}%: {e}")


@task(name="train")
def train_task(params_path: str, stage: StageName) -> tuple[dict, list[float]]:
    r = train_step(params.load(params_path), stage, run_tags(), ProgressBar(stage))
    return {k: v for k, v in vars(r).items() if k != "losses"}, r.losses


@task(name="train")
def train_ranks(params_path: str, stage: StageName, processes: int) -> dict:
    """The stage under torchrun on this node; rank 0 records the MLflow run with this flow run's
    tags and writes its progress to a file this task moves the progress bar from. Its result, from
    the training.json it wrote."""
    tags = [f"--tag={k}={v}" for k, v in run_tags().items()]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
    ]
    bar = ProgressBar(stage)
    with tempfile.TemporaryDirectory(prefix="svd-progress-") as tmp:
        progress = Path(tmp) / "progress"
        cli = ["-m", "svd.cli", "--params", params_path, "train", "--stage", stage, f"--progress={progress}"]
        with subprocess.Popen([*torchrun, *cli, *tags]) as ranks:
            try:
                while ranks.poll() is None:
                    with suppress(subprocess.TimeoutExpired):
                        ranks.wait(timeout=2)
                    if progress.exists():
                        bar(*map(int, progress.read_text().split()))
            except BaseException:  # the task failed or was cancelled: so do the ranks (torchrun passes it on)
                ranks.terminate()
                try:
                    ranks.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    ranks.kill()
                raise
    if ranks.returncode:
        raise subprocess.CalledProcessError(ranks.returncode, ranks.args)
    out = Path(params.load(params_path).stage(stage).out)
    return json.loads((out / "training.json").read_text())["result"]


TRAINED = "svd.finetune.trained"  # what infra/prefect.yaml's evaluate deployment is triggered by


def nothing_evaluates(run: FlowRun) -> bool:
    """Whether a Stage III run leaves its model to the automations: it came from a deployment (the
    UI, an API call, a schedule; a run of `python -m flows` or `dvc repro` is of none, and the
    automations never see it) and has no parent (the pipeline evaluates next itself, after its
    subflow and its pool run alike)."""
    return (
        run.parameters.get("stage") == "finetune"
        and run.deployment_id is not None
        and not run.parent_task_run_id
    )


def announce(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """On completion: a Stage III model nothing else evaluates is announced. Prefect's own completion
    event carries no parent, so a trigger on it cannot tell a pool run the pipeline waits for from
    one started by hand; this event is only emitted for the latter."""
    if nothing_evaluates(flow_run):
        resource = {
            "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
            "prefect.resource.name": flow_run.name,
        }
        emit_event(TRAINED, resource=resource)


@flow(name="train", flow_run_name=run_name, log_prints=True, on_completion=[announce])
def train(
    stage: StageName = "image",
    train: TrainForm = TrainForm(),  # noqa: B008
    model: ModelForm = ModelForm(),  # noqa: B008
    conditioning: ConditioningForm = ConditioningForm(),  # noqa: B008
    processes: Annotated[int, Field(ge=1)] = 1,
    params_path: str = "params.yaml",
) -> dict:
    """Train one of the paper's stages: image (Stage I), video (Stage II) or finetune (Stage III).

    Args:
        stage: Which stage to train.
        train: Stage and compute settings for this run; empty fields keep params.yaml's.
        model: Architecture and weights for this run; empty fields keep params.yaml's.
        conditioning: Conditioning-frame noise for this run; empty fields keep params.yaml's.
        processes: Training processes on this node, one per GPU; over 1 runs the stage under
            torchrun (train.compute.parallel: ddp or fsdp).
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, train=train, model=model, conditioning=conditioning)
    losses: list[float] = []  # under torchrun the MLflow run has them
    if processes > 1:
        result = train_ranks(params_path, stage, processes)
    else:
        result, losses = train_task(params_path, stage)
    create_markdown_artifact(
        f"### Stage {stage}\n\n| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items()),
        key=f"train-{stage}",
    )
    every = max(len(losses) // 100, 1)  # the curve in at most about 100 rows; MLflow has every step
    if losses:
        create_table_artifact(
            [
                {"step": i + 1, "loss": round(x, 5)}
                for i, x in enumerate(losses)
                if i % every == 0 or i == len(losses) - 1
            ],
            key=f"train-{stage}-loss",
            description=f"Stage {stage}: training loss (the MLflow run has each step and a PNG curve)",
        )
    link_mlflow(f"train-{stage}")
    return result
