"""What every flow shares: the ids that go into MLflow tags, and DVC bookkeeping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from svd import tracking


def run_tags() -> dict[str, str]:
    """Prefect's ids for the MLflow run: the flow run itself and the pipeline run above it."""
    tags = {"prefect.flow_run_id": str(flow_run.get_id())}
    if root := flow_run.get_root_flow_run_id():
        tags["prefect.root_flow_run_id"] = str(root)
    return tags


def link_mlflow(stage: str) -> None:
    """A link artifact from the flow run to the MLflow experiment, the other half of the lineage."""
    uri = tracking.tracking_uri()
    if uri.startswith("http"):
        create_link_artifact(
            link=f"{uri}/#/experiments", link_text=f"MLflow runs of {stage}", key=f"mlflow-{stage}"
        )


@task(retries=2, retry_delay_seconds=2)
def dvc_commit(*stages: str) -> None:
    """Record outputs produced by a flow in dvc.lock, so `dvc status` agrees with what the flow did.

    Runs only inside a DVC project; DVC holds a repo lock, so the calls are made one at a time."""
    if not Path("dvc.yaml").exists():
        get_run_logger().info("no dvc.yaml here: outputs not recorded in DVC")
        return
    for stage in stages:
        subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", stage], check=True)
