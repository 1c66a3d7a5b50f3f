"""MLflow runs with lineage: every run says which code (git commit), which data (DVC hashes of its
inputs, read from dvc.lock) and which orchestration run (Prefect flow-run id, passed in by the
flow) produced it, so a registered model traces back to all three."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import yaml

EXPERIMENT = "svd"  # each step's runs go to the experiment "svd/<step>", e.g. svd/train-video


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (the local stack or a team server), else SQLite in the cwd."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').absolute()}"


def configure(experiment: str = EXPERIMENT) -> None:
    """Point MLflow at the tracking URI and the experiment, made on first use as a model training
    experiment (MLflow 3's UI otherwise guesses, and shows GenAI pages for runs without traces)."""
    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        local = tracking_uri().startswith("sqlite:")
        location = Path("mlartifacts").absolute().as_uri() if local else None  # a server decides its own
        kind = {"mlflow.experimentKind": "custom_model_development"}
        mlflow.create_experiment(experiment, artifact_location=location, tags=kind)
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


def log_datasets(inputs: list[Path]) -> None:
    """Each input DVC versions as a dataset input of the run, its digest the DVC md5: the run's
    Datasets tab names the exact data, and searches can filter runs by it."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource  # type: ignore[attr-defined]

    for path, md5 in dvc_hashes(inputs).items():
        uri = path if path.startswith("s3://") else str(Path(path).absolute())
        source = S3ArtifactDatasetSource(uri) if path.startswith("s3://") else LocalArtifactDatasetSource(uri)
        mlflow.log_input(MetaDataset(source, name=path, digest=md5[:36]), context="input")  # type: ignore[abstract]


@contextmanager
def run(
    name: str,
    inputs: list[Path],
    params: Mapping,
    tags: Mapping[str, str] | None = None,
    description: str = "",
) -> Iterator[str]:
    """An MLflow run of step `name` in the step's experiment (svd/<name>), carrying the lineage tags,
    the inputs as datasets, the flattened params, a description, and CPU, memory and GPU sampled
    every 5 s; yields the run id."""
    configure(f"{EXPERIMENT}/{name}")
    mlflow.set_system_metrics_sampling_interval(5)
    mlflow.set_system_metrics_samples_before_logging(1)
    run_tags = lineage(inputs, tags) | ({"mlflow.note.content": description} if description else {})
    with mlflow.start_run(run_name=name, tags=run_tags, log_system_metrics=True) as active:
        mlflow.log_params(flatten(params))
        log_datasets(inputs)
        yield active.info.run_id


def log_bytes(data: bytes, name: str) -> None:
    """An artifact of the active run from bytes in memory, at `name` (e.g. report/loss.png)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent))


class MLflowRecorder:
    """svd.train.record.Recorder into the active run: metrics by step, sample videos as artifacts,
    and each resume point as a LoggedModel of the run (model_type "checkpoint", its step a tag)."""

    def metrics(self, values: dict[str, float], step: int) -> None:
        mlflow.log_metrics(values, step=step)

    def video(self, name: str, frames: np.ndarray, fps: float, step: int) -> None:
        from svd.media.io import encode_video

        log_bytes(encode_video(frames, fps), name)

    def checkpoint(self, name: str, path: Path, step: int) -> None:
        active = mlflow.active_run()
        model = mlflow.initialize_logged_model(
            name=name,
            source_run_id=active.info.run_id if active else None,
            tags={"step": str(step)},
            model_type="checkpoint",
        )
        try:
            mlflow.MlflowClient().log_model_artifact(model.model_id, str(path))
        except Exception:
            mlflow.finalize_logged_model(model.model_id, "FAILED")
            raise
        mlflow.finalize_logged_model(model.model_id, "READY")
