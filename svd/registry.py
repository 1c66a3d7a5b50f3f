"""The Stage III model in the MLflow registry.

`mlflow.diffusers` only handles LoRA adapters on a hub base model, so the full pipeline folder is
logged as a pyfunc artifact, with this package as code so the model loads wherever its pip
requirements are installed, and svd/served_model.py as its entry point (no pickle). Aliases, not
the deprecated stages: every registered version gets `candidate`; `champion` moves to it only when
every gate in params.yaml passes and it beats the current champion by register.margins (the
challenger rule). Each version's metrics are kept as its tags (metric.<name>), so the next
challenger is judged against them, and its description is a model card: data hashes, params,
metrics, the promotion decision, a link to the samples, and the arena's result once
`svd arena results` has one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from collections.abc import Mapping
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
from svd import tracking
from svd.params import MARGIN_METRICS, Gates

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "image", required=False),  # base64 PNG/JPEG: an image-to-video model's frame
            ColSpec("string", "prompt", required=False),  # a text-to-video model's caption
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
ARENA = "\n\n## Arena"  # the model card's section that svd.evaluate.arena writes
DESCRIPTION = 5000  # characters the registry keeps of a description
REQUIREMENTS = ("torch", "diffusers", "transformers", "safetensors", "av", "pillow", "pydantic", "pyyaml")


class SVDPipelineModel(PythonModel):
    def load_context(self, context) -> None:
        from svd.model import components  # side output: the served model

        self.components = components.load(context.artifacts["pipeline"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """A video per row: from its image for an image-to-video model, from its prompt for a
        text-to-video one; the other input is an error, not ignored."""
        from svd.generate import image_to_video, text_to_video  # side output: the served model
        from svd.media.io import encode_video  # side output: the served model

        c, videos = self.components, []
        wants = "image" if c.is_image_to_video else "prompt"
        for row in model_input.to_dict("records"):
            opt = {k: v for k, v in row.items() if not pd.isna(v)}
            other = "prompt" if wants == "image" else "image"
            if wants not in opt or other in opt:
                kind = "an image-to-video" if wants == "image" else "a text-to-video"
                raise ValueError(f"this is {kind} model: each request row needs '{wants}', not '{other}'")
            fps = int(opt.get("fps", 6))
            bucket = int(opt.get("motion_bucket", 127))
            if "motion_score" in opt:
                bucket = motion_bucket_for(c, float(opt["motion_score"]))
            frames, steps, seed = (
                int(opt.get("frames", 8)),
                int(opt.get("steps", 25)),
                int(opt.get("seed", 0)),
            )
            size = (int(opt["height"]), int(opt["width"])) if "height" in opt and "width" in opt else None
            if wants == "image":
                image = np.array(Image.open(io.BytesIO(base64.b64decode(opt["image"]))).convert("RGB"))
                video = image_to_video(
                    c, image, frames=frames, fps=fps, motion_bucket=bucket, steps=steps, seed=seed, size=size
                )
            else:
                video = text_to_video(
                    c,
                    str(opt["prompt"]),
                    frames=frames,
                    fps=fps,
                    motion_bucket=bucket,
                    steps=steps,
                    seed=seed,
                    size=size,
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


def takes_image(model_dir: Path) -> bool:
    """Whether the saved model is image-to-video (its UNet takes the frame's latent beside its
    input), read from the configs alone."""
    unet = json.loads((Path(model_dir) / "unet" / "config.json").read_text())
    vae = json.loads((Path(model_dir) / "vae" / "config.json").read_text())
    return bool(unet["in_channels"] == 2 * vae["latent_channels"])


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


def register(
    model_dir: Path,
    name: str,
    metrics: dict,
    gates: Gates,
    run_id: str,
    margins: Mapping[str, float] | None = None,
    samples: str | None = None,
    training: Mapping[str, str] | None = None,
) -> Registration:
    """Register the pipeline folder and set its aliases. Weights registered before (by content hash)
    keep their version, so the registry follows DVC: a model DVC restores, or a rerun of an unchanged
    model, gets its old version back, aliases included, instead of a copy under a new number.
    `samples` links the evaluation's sample videos in the model card, `training` names the data the
    model was trained on (an md5 per subset)."""
    client = mlflow.MlflowClient()
    digest = content_hash(model_dir)
    same = client.search_model_versions(f"name = '{name}' and tags.model_sha256 = '{digest}'")
    if same:
        version = str(min(int(v.version) for v in same))
    else:  # new weights: the folder as a pyfunc logged inside the active run
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("served_model.py")),
            artifacts={"pipeline": str(model_dir)},
            code_paths=[str(Path(svd.__file__).parent)],
            pip_requirements=[f"{r}=={metadata.version(r)}" for r in REQUIREMENTS],
            signature=SIGNATURE,
        )
        # Tagged as it is made, so that of two workspaces registering the same weights at once (they
        # are deterministic) the later version always sees the earlier: the lowest holds them, and
        # the other copy is deleted again
        made = mlflow.register_model(info.model_uri, name, tags={"model_sha256": digest})
        same = client.search_model_versions(f"name = '{name}' and tags.model_sha256 = '{digest}'")
        version = str(min(int(v.version) for v in same))
        if version != str(made.version):
            client.delete_model_version(name, str(made.version))
        else:
            for key, value in client.get_run(run_id).data.tags.items():
                if key.startswith(("git.", "dvc.", "prefect.")):
                    client.set_model_version_tag(name, version, key, value)
    # two registrations of the same weights at once write the same new rows: tracking.retry_raced
    for metric, number in tracking.finite(metrics).items():
        tracking.retry_raced(client.set_model_version_tag, name, version, f"metric.{metric}", repr(number))
    gated = gate_failures(metrics, gates)
    current = champion(client, name)
    lost: list[str] = []
    compared: list[str] = []
    if current not in (None, version):
        mv = client.get_model_version(name, current)
        held = {k.removeprefix("metric."): float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
        if not held and mv.run_id:  # registered before versions kept their metrics: its run's
            held = dict(client.get_run(mv.run_id).data.metrics)
        lost, compared = challenge(metrics, held, margins or {})
        compared = [f"against champion version {current}: {c}" for c in compared]
    failures = gated + [f"does not beat champion version {current}: {x}" for x in lost]
    aliases = ["candidate"] + ([] if failures else ["champion"])
    for alias in aliases:
        tracking.retry_raced(client.set_registered_model_alias, name, alias, version)
    if failures and champion(client, name) == version:  # it fails the gates as they are now
        client.delete_registered_model_alias(name, "champion")
    gates_tag = "passed" if not failures else "; ".join(failures)
    tracking.retry_raced(client.set_model_version_tag, name, version, "gates", gates_tag)
    run = client.get_run(run_id)
    card = model_card(
        name, version, run, metrics, gated, compared, aliases, samples, takes_image(model_dir), training or {}
    )
    arena = (client.get_model_version(name, version).description or "").partition(ARENA)[2]
    arena = ARENA + arena if arena else ""  # registered again: the arena's votes still stand
    client.update_model_version(name, version, description=card[: DESCRIPTION - len(arena)] + arena)
    return Registration(name, version, aliases, failures, run_id, f"models:/{name}/{version}")


def challenge(
    metrics: Mapping, held: Mapping[str, float], margins: Mapping[str, float]
) -> tuple[list[str], list[str]]:
    """(lost, compared): the margin metrics on which a candidate does not beat the champion's `held`
    values, and a line for each margin. A metric the champion lacks cannot be compared; one the
    champion has and the candidate lacks is lost."""
    lost, compared = [], []
    for metric, margin in margins.items():
        new, old = metrics.get(metric), held.get(metric)
        if old is None or not math.isfinite(old):
            compared.append(f"{metric}: not compared, the champion has none (candidate {new})")
            continue
        if not isinstance(new, int | float) or not math.isfinite(new):
            lost.append(f"{metric}: the candidate has none, the champion {old:.6g}")
            compared.append(lost[-1])
            continue
        lower = MARGIN_METRICS[metric] == "lower"
        beaten = new <= old - margin if lower else new >= old + margin
        line = (
            f"{metric} {new:.6g} against the champion's {old:.6g}, margin {margin:g}"
            f" ({'lower' if lower else 'higher'} is better): {'beaten' if beaten else 'not beaten'}"
        )
        compared.append(line)
        if not beaten:
            lost.append(line)
    return lost, compared


def model_card(
    name: str,
    version: str,
    run: mlflow.entities.Run,
    metrics: Mapping,
    gated: list[str],
    compared: list[str],
    aliases: list[str],
    samples: str | None,
    image_to_video: bool,
    training: Mapping[str, str],
) -> str:
    """The version's description, in Markdown (MLflow's UI renders it): `gated` are the gates it
    failed, `compared` how it fared against the champion."""
    tags, params = run.data.tags, run.data.params
    served = "an image in (image-to-video)" if image_to_video else "a prompt in (text-to-video)"
    data = sorted((k.removeprefix("dvc.md5."), v) for k, v in tags.items() if k.startswith("dvc.md5."))
    lines = [
        f"# {name} version {version}",
        "",
        f"Stable Video Diffusion, Stage III: {served}, and a video out.",
        f"Registered by MLflow run {run.info.run_id}, code at git commit"
        f" {tags.get('git.commit', 'unknown')}.",
        "",
        "## Metrics",
        *(f"- {k}: {v:.6g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in metrics.items()),
        "",
        "## Promotion",
        f"Aliases given at registration: {', '.join(aliases)}. Gates: {'failed' if gated else 'passed'}.",
        *(f"- {g}" for g in gated),
        *(f"- {c}" for c in compared),
        *(["", "## Samples", f"[The evaluation's sample videos]({samples})"] if samples else []),
        "",
        "## Training data and settings",
        *(f"- `{k}`: {v}" for k, v in training.items()),
        "",
        "## Registration inputs (DVC md5)",
        *(f"- `{path}`: {md5}" for path, md5 in data),
        "",
        "## Registration params",
        *(f"- `{k}`: {v}" for k, v in sorted(params.items())),
    ]
    return "\n".join(lines)


def champion(client: mlflow.MlflowClient, name: str) -> str | None:
    """The version the champion alias points at, None when no version holds it."""
    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except mlflow.exceptions.MlflowException:
        return None
