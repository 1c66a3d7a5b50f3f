"""MLflow runs with lineage: every run says which code (git commit), which data (DVC hashes of its
inputs, read from dvc.lock) and which orchestration run (Prefect flow-run id, passed in by the
flow) produced it, so a registered model traces back to all three."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
import yaml

EXPERIMENT = "svd"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (the local stack or a team server), else SQLite in the cwd."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').absolute()}"


def configure(experiment: str = EXPERIMENT) -> None:
    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        local = tracking_uri().startswith("sqlite:")
        location = Path("mlartifacts").absolute().as_uri() if local else None  # a server decides its own
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)


def git_commit(cwd: Path = Path()) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def dvc_hashes(inputs: list[Path], lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """md5 that DVC recorded for each input, as an output of the stage that produced it."""
    if not lock.exists():
        return {}
    recorded: dict[str, str] = {}
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for entry in stage.get("outs", []) + stage.get("deps", []):
            recorded.setdefault(entry["path"].rstrip("/"), entry.get("md5", ""))
    return {str(p): recorded[str(p)] for p in map(Path, inputs) if str(p) in recorded}


def lineage(inputs: list[Path], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = {"git.commit": git_commit()}
    tags |= {f"dvc.md5.{path}": md5 for path, md5 in dvc_hashes(inputs).items()}
    tags |= dict(extra or {})
    tags.setdefault("prefect.flow_run_id", "none")  # library or CLI use, outside any flow
    return tags


def flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= flatten(v, key + ".") if isinstance(v, Mapping) else {key: str(v)}
    return out


@contextmanager
def run(
    name: str, inputs: list[Path], params: Mapping, tags: Mapping[str, str] | None = None
) -> Iterator[str]:
    """An MLflow run carrying the lineage tags and the flattened params; yields the run id."""
    configure()
    with mlflow.start_run(run_name=name, tags=lineage(inputs, tags)) as active:
        mlflow.log_params(flatten(params))
        yield active.info.run_id
