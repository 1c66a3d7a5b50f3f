"""Typed, frozen view of params.yaml.

Every section is a pydantic model that rejects unknown keys, so a typo in params.yaml fails at load
time with the key's name instead of silently falling back to a default halfway through a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SynthParams(Section):
    out: Path = Path("data/raw")
    videos: int = Field(default=8, ge=1)
    fps: int = Field(default=12, ge=4)
    width: int = 128
    height: int = 96
    segments: tuple[int, int] = (3, 5)
    segment_seconds: tuple[float, float] = (2.5, 4.0)
    fade_every: int = Field(default=3, ge=1)
    fade_frames: int = Field(default=12, ge=2)
    text_fraction: float = Field(default=0.3, ge=0, le=1)
    text_areas: tuple[float, float] = (0.02, 0.16)  # (small, large) overlay box / frame area
    slow_speed: float = Field(default=0.75, gt=0)  # px / frame
    fast_speed: float = Field(default=3.0, gt=0)
    gop: int = Field(default=6, ge=1)  # keyframe interval of the encoded videos


class CutParams(Section):
    content_threshold: float = 27.0
    adaptive_threshold: float = 3.0
    fade_threshold: float = 12.0
    min_scene_len: int = 15
    downscale_width: int = 128
    fade_trim: float = Field(default=0.85, ge=0, le=1)  # scene-end frames darker than this x median are fade


class MotionParams(Section):
    fps: float = 2.0
    short_side: int = 16


class TextParams(Section):
    frames: tuple[Literal["first", "middle", "last"], ...] = ("first", "middle", "last")
    side: int = Field(default=320, ge=32)  # long side of the frames the detector sees, px


class CurateParams(Section):
    sources: tuple[Path, ...] = (Path("data/raw"),)
    out: Path = Path("data/curated")
    cuts: CutParams = CutParams()
    min_clip_seconds: float = 1.0
    motion: MotionParams = MotionParams()
    text: TextParams = TextParams()


class HQParams(Section):
    motion_drop_fraction: float = Field(default=0.5, ge=0, lt=1)
    max_text_area: float = Field(default=0.02, ge=0, le=1)
    min_seconds: float = 2.0


class FilterParams(Section):
    out: Path = Path("data/subsets")
    motion_drop_fraction: float = Field(default=0.25, ge=0, lt=1)
    max_text_area: float = Field(default=0.07, ge=0, le=1)
    hq: HQParams = HQParams()
    val_fraction: float = Field(default=0.2, ge=0, lt=1)


class VAEParams(Section):
    block_out_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 4


class UNetParams(Section):
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 2
    cross_attention_dim: int = 32
    num_attention_heads: int = 4
    addition_time_embed_dim: int = 32


class ImageEncoderParams(Section):
    hidden_size: int = 32
    projection_dim: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    image_size: int = 32
    patch_size: int = 8


class ModelParams(Section):
    pretrained: str | None = None
    vae: VAEParams = VAEParams()
    unet: UNetParams = UNetParams()
    image_encoder: ImageEncoderParams = ImageEncoderParams()


Subset = Literal["lvd", "lvd_f", "hq"]


class StageParams(Section):
    """One training stage. The three stages share one loop; what differs is only this config."""

    out: Path
    init: Path | None = None
    subset: Subset
    resolution: tuple[int, int]  # (height, width) in pixels
    frames: int = Field(ge=1)
    fps: int = 6
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    p_mean: float
    p_std: float = Field(gt=0)
    cond_drop: float = Field(default=0.0, ge=0, le=1)
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    autoencoder_steps: int = Field(default=0, ge=0)
    autoencoder_lr: float = 1e-3
    autoencoder_frames: int = Field(default=4, ge=1)  # consecutive frames: the decoder is temporal
    autoencoder_batch_size: int = Field(default=4, ge=1)  # windows per step


class TrainParams(Section):
    image: StageParams
    video: StageParams
    finetune: StageParams


StageName = Literal["image", "video", "finetune"]
STAGES: tuple[StageName, ...] = ("image", "video", "finetune")


class ConditioningParams(Section):
    cond_aug_p_mean: float = -3.0
    cond_aug_p_std: float = 0.5
    motion_score_max: float = Field(default=8.0, gt=0)


class EvaluateParams(Section):
    out: Path = Path("reports/eval")
    subset: Subset = "lvd_f"
    sigmas: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
    steps: int = 12
    guidance: tuple[float, float] = (1.0, 2.5)
    motion_buckets: tuple[int, ...] = (0, 64, 128, 192, 255)
    fps: int = 6
    samples: int = Field(default=2, ge=1)


class Gates(Section):
    max_val_loss: float | None = None
    min_motion_spearman: float | None = None


class RegisterParams(Section):
    out: Path = Path("reports/registration.json")
    name: str = "svd-tiny"
    gates: Gates = Gates()


class Params(Section):
    seed: int = 0
    synth: SynthParams = SynthParams()
    curate: CurateParams = CurateParams()
    filter: FilterParams = FilterParams()
    model: ModelParams = ModelParams()
    train: TrainParams
    conditioning: ConditioningParams = ConditioningParams()
    evaluate: EvaluateParams = EvaluateParams()
    registry: RegisterParams = RegisterParams()

    def stage(self, name: StageName) -> StageParams:
        return getattr(self.train, name)


class ParamsError(ValueError):
    pass


def load(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read params.yaml, deep-merge `overrides` (e.g. a test profile) and validate."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if overrides:
        raw = merge(raw, overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(f"{path}: {e}") from None


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
