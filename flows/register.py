"""Registration: log the Stage III pipeline to MLflow, alias it candidate, champion if the gates pass."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import link_mlflow, run_name, run_tags
from flows.forms import RegisterForm, override
from svd import params
from svd.steps.register import register as register_step


@task(name="register", retries=2, retry_delay_seconds=5)  # tracking server, artifact store
def register_task(params_path: str) -> dict:
    return register_step(params.load(params_path), run_tags())


@flow(name="register", flow_run_name=run_name, log_prints=True)
def register(register: RegisterForm = RegisterForm(), params_path: str = "params.yaml") -> dict:  # noqa: B008
    """Register the Stage III model: alias candidate, and champion if every gate passes.

    Args:
        register: Model name and gates for this run; empty fields keep params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, register=register)
    reg = register_task(params_path)
    gates = "passed" if not reg["gate_failures"] else "failed: " + "; ".join(reg["gate_failures"])
    create_markdown_artifact(
        f"**{reg['name']}** version {reg['version']}, aliases {', '.join(reg['aliases'])}; gates {gates}",
        key="registration",
    )
    link_mlflow("register")
    return reg
