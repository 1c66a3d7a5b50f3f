"""What every flow shares: the ids that go into MLflow tags, and DVC bookkeeping."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from svd import tracking


def run_tags() -> dict[str, str]:
    """Prefect's ids for the MLflow run: the flow run itself and the pipeline run above it, and the
    flow run's page, the way back from MLflow to Prefect."""
    tags = {"prefect.flow_run_id": str(flow_run.get_id())}
    if root := flow_run.get_root_flow_run_id():
        tags["prefect.root_flow_run_id"] = str(root)
    ui = flow_run.get_flow_run_ui_url()
    if ui and ui.startswith("http"):  # without a server Prefect gives "None/flow-runs/..."
        tags["prefect.flow_run_url"] = ui
    # the flow as the run's source (MLflow would name Prefect's engine, the process's entry point)
    tags["mlflow.source.name"] = f"flows/{flow_run.get_flow_name()}.py"
    tags["mlflow.source.type"] = "JOB"
    return tags


def run_name() -> str:
    """A flow run's name from what it runs: `<flow>[-<stage>]-<4 hex of its params>`, e.g.
    `train-video-3f9c`. The hex covers the run's parameters and the params file's contents (not the
    data or code), so runs of the same settings share a name; 16 bits can also collide by chance."""
    given = dict(flow_run.parameters)
    which = given.get("stage")
    h = hashlib.sha256(json.dumps(given, sort_keys=True, default=str).encode())
    path = Path(str(given.get("params_path", "params.yaml")))
    if path.is_file():
        h.update(path.read_bytes())
    return "-".join(x for x in (flow_run.flow_name, which, h.hexdigest()[:4]) if x)


def artifact_url(run_id: str, path: str) -> str:
    """An MLflow run's artifact as the tracking server serves it (to show in a Prefect artifact)."""
    return f"{tracking.tracking_uri()}/get-artifact?path={path}&run_uuid={run_id}"


def link_mlflow(step: str) -> list[str]:
    """A link artifact from the flow run to each MLflow run it made (found by the run_tags it gave
    them), the other half of the lineage; those runs' ids. Only a tracking server has pages to
    link to."""
    import mlflow

    uri = tracking.tracking_uri()
    if not uri.startswith("http"):
        return []
    mlflow.set_tracking_uri(uri)
    made = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`prefect.flow_run_id` = '{flow_run.get_id()}'",
        output_format="list",
    )
    for r in made:
        create_link_artifact(
            link=tracking.run_page(r.info.experiment_id, r.info.run_id),
            link_text=f"MLflow run {r.info.run_name}",
            key=f"mlflow-{step}",
        )
    return [r.info.run_id for r in made]


@task
def up_to_date(stage: str) -> bool:
    """Whether DVC holds the stage's outputs for its current deps and params (`dvc status`): the
    pipeline flow decides as `dvc repro` does, so the two doors never disagree on what to recompute.
    Outside a DVC project every step runs. Through DVC's API in this process: a `dvc` subprocess
    per call cost the pipeline seconds of interpreter start a step."""
    if not Path("dvc.yaml").exists():
        return False
    from dvc.repo import Repo

    with Repo() as repo:
        return not repo.status(targets=[stage])


@task(retries=2, retry_delay_seconds=2)
def dvc_commit(*stages: str) -> None:
    """Record outputs produced by a flow in dvc.lock, so `dvc status` agrees with what the flow did.

    Runs only inside a DVC project; DVC holds a repo lock, so the calls are made one at a time."""
    if not Path("dvc.yaml").exists():
        get_run_logger().info("no dvc.yaml here: outputs not recorded in DVC")
        return
    from dvc.repo import Repo

    with Repo() as repo:
        for stage in stages:
            repo.commit(stage, force=True)
