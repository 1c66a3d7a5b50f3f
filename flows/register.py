"""Registration: log the Stage III pipeline to MLflow, alias it candidate, champion if the gates pass."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import link_mlflow, run_name, run_tags
from svd import params, stages


@task(retries=2, retry_delay_seconds=5)  # talks to the tracking server and the artifact store
def register_model(params_path: str) -> dict:
    return stages.register(params.load(params_path), run_tags())


@flow(name="register", flow_run_name=run_name, log_prints=True)
def register(params_path: str = "params.yaml") -> dict:
    reg = register_model(params_path)
    gates = "passed" if not reg["gate_failures"] else "failed: " + "; ".join(reg["gate_failures"])
    create_markdown_artifact(
        f"**{reg['name']}** version {reg['version']}, aliases {', '.join(reg['aliases'])}; gates {gates}",
        key="registration",
    )
    link_mlflow("register")
    return reg
