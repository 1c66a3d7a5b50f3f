"""The Stage III model in the MLflow registry.

`mlflow.diffusers` only handles LoRA adapters on a hub base model, so the full pipeline folder is
logged as a pyfunc artifact, with this package as code so the model loads wherever its pip
requirements are installed. Aliases, not the deprecated stages: every registered version gets
`candidate`; `champion` moves to it only when every gate in params.yaml passes.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema
from PIL import Image

import svd  # side output: the logged model's code
from svd.params import Gates

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "image"),  # base64 PNG/JPEG of the conditioning frame
            ColSpec("long", "frames", required=False),
            ColSpec("long", "fps", required=False),
            ColSpec("long", "motion_bucket", required=False),
            ColSpec("double", "motion_score", required=False),  # a curated score; the model maps it
            ColSpec("long", "height", required=False),  # default: the UNet's square size
            ColSpec("long", "width", required=False),
            ColSpec("long", "steps", required=False),
            ColSpec("long", "seed", required=False),
        ]
    ),
    outputs=Schema([ColSpec("string", "video")]),  # base64 mp4
)
REQUIREMENTS = ("torch", "diffusers", "transformers", "safetensors", "av", "pillow", "pydantic", "pyyaml")


class SVDPipelineModel(PythonModel):
    def load_context(self, context) -> None:
        from svd.model import components  # side output: the served model

        self.components = components.load(context.artifacts["pipeline"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from svd.generate import image_to_video  # side output: the served model
        from svd.media.io import encode_video  # side output: the served model

        videos = []
        for row in model_input.to_dict("records"):
            image = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["image"]))).convert("RGB"))
            opt = {k: v for k, v in row.items() if k != "image" and not pd.isna(v)}
            fps = int(opt.get("fps", 6))
            bucket = int(opt.get("motion_bucket", 127))
            if "motion_score" in opt:
                bucket = motion_bucket_for(self.components, float(opt["motion_score"]))
            video = image_to_video(
                self.components,
                image,
                frames=int(opt.get("frames", 8)),
                fps=fps,
                motion_bucket=bucket,
                steps=int(opt.get("steps", 25)),
                seed=int(opt.get("seed", 0)),
                size=(int(opt["height"]), int(opt["width"])) if "height" in opt and "width" in opt else None,
            )
            videos.append(base64.b64encode(encode_video(video, fps)).decode())
        return pd.DataFrame({"video": videos})


def motion_bucket_for(c, score: float) -> int:
    """The bucket the model's saved map gives a curated motion score."""
    import torch

    if c.motion is None:
        raise ValueError("this model has no motion-bucket map (motion_buckets.json): ask for motion_bucket")
    return int(c.motion.bucket(torch.tensor([score]))[0])


def gate_failures(metrics: dict, gates: Gates) -> list[str]:
    failures = []
    if gates.max_val_loss is not None and not metrics["val_loss"] <= gates.max_val_loss:
        failures.append(f"val_loss {metrics['val_loss']:.4f} > {gates.max_val_loss}")
    if gates.min_motion_spearman is not None:
        rho = metrics.get("motion_spearman")
        if rho is None or rho < gates.min_motion_spearman:
            failures.append(f"motion_spearman {rho} < {gates.min_motion_spearman}")
    return failures


@dataclass
class Registration:
    name: str
    version: str
    aliases: list[str]
    gate_failures: list[str]
    run_id: str
    model_uri: str


def content_hash(folder: Path) -> str:
    """sha256 over a model folder's files, names and bytes, less training.json (how it was trained,
    e.g. checkpoint_every, not what it is): the same model, the same hash."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "training.json"):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def register(model_dir: Path, name: str, metrics: dict, gates: Gates, run_id: str) -> Registration:
    """Register the pipeline folder and set its aliases. Weights registered before (by content hash)
    keep their version, so the registry follows DVC: a model DVC restores, or a rerun of an unchanged
    model, gets its old version back, aliases included, instead of a copy under a new number."""
    client = mlflow.MlflowClient()
    digest = content_hash(model_dir)
    same = client.search_model_versions(f"name = '{name}' and tags.model_sha256 = '{digest}'")
    if same:
        version = str(min(int(v.version) for v in same))
    else:  # new weights: the folder as a pyfunc logged inside the active run
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SVDPipelineModel(),
            artifacts={"pipeline": str(model_dir)},
            code_paths=[str(Path(svd.__file__).parent)],
            pip_requirements=[f"{r}=={metadata.version(r)}" for r in REQUIREMENTS],
            signature=SIGNATURE,
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        client.set_model_version_tag(name, version, "model_sha256", digest)
        for key, value in client.get_run(run_id).data.tags.items():
            if key.startswith(("git.", "dvc.", "prefect.")):
                client.set_model_version_tag(name, version, key, value)
    failures = gate_failures(metrics, gates)
    aliases = ["candidate"] + ([] if failures else ["champion"])
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    if failures and champion(client, name) == version:  # it fails the gates as they are now
        client.delete_registered_model_alias(name, "champion")
    client.set_model_version_tag(name, version, "gates", "passed" if not failures else "; ".join(failures))
    return Registration(name, version, aliases, failures, run_id, f"models:/{name}/{version}")


def champion(client: mlflow.MlflowClient, name: str) -> str | None:
    """The version the champion alias points at, None when no version holds it."""
    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except mlflow.exceptions.MlflowException:
        return None
