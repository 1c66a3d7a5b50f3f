"""Typed, frozen view of params.yaml.

Every section is a pydantic model that rejects unknown keys, so a typo in params.yaml fails at load
time with the key's name instead of silently falling back to a default halfway through a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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
    fade_every: int = Field(default=3, ge=1)  # every k-th transition (across the corpus) is a fade
    fade_frames: int = Field(default=12, ge=2)
    dissolve_every: int = Field(default=4, ge=1)  # every k-th transition is a dissolve, unless a fade
    dissolve_frames: int = Field(default=8, ge=1)
    short_every: int = Field(default=10, ge=1)  # every k-th inner segment is sub-second, cut on both sides
    short_seconds: tuple[float, float] = (0.3, 0.8)
    text_fraction: float = Field(default=0.3, ge=0, le=1)
    text_areas: tuple[float, float] = (0.02, 0.16)  # (small, large) overlay box / frame area
    slow_speed: float = Field(default=0.75, gt=0)  # px / frame
    fast_speed: float = Field(default=3.0, gt=0)
    gop: int = Field(default=6, ge=1)  # keyframe interval of the encoded videos


class CutParams(Section):
    """svd.curation.scenes: hard cuts by PySceneDetect, fades and dissolves by a blend test."""

    content_threshold: float = 27.0  # ContentDetector: HSV change between two frames that is a cut
    adaptive_threshold: float = 3.0  # AdaptiveDetector: that change over its neighbours' average
    min_cut_change: float = 8.0  # mean |RGB change| (0-255) across a cut: a hue flicker is no cut
    fade_threshold: float = 12.0  # mean pixel value (0-255) at or below which a frame is black
    downscale_width: int = Field(default=128, ge=16)  # detection runs on frames this wide
    max_transition_seconds: float = Field(default=2.0, gt=0)  # longest fade or dissolve found
    min_transition_change: float = Field(default=20.0, gt=0)  # mean |F_end - F_start| of one (0-255)
    min_straightness: float = Field(default=0.6, gt=0, le=1)  # that change / summed frame-to-frame change
    blend_agreement: float = Field(default=0.5, gt=0, le=1)  # share of changing pixels a blend moves in step
    motion_residual: float = Field(default=0.5, ge=0, le=1)  # at most this change left once moved: motion


class CurateParams(Section):
    """Raw videos -> WebDataset shards of clips and the clip table (svd.curation)."""

    sources: tuple[str, ...] = ("data/raw",)  # folders or s3://bucket/prefix URIs of raw videos
    out: str = "data/curated"  # folder or s3:// URI: clips.parquet + shards/*.tar
    cache: str = "data/cache"  # content-addressed annotation cache, folder or s3:// URI
    cuts: CutParams = CutParams()
    min_clip_seconds: float = Field(default=1.0, gt=0)  # shorter scenes give no clip (never merged)
    scorers: dict[str, Any] = Field(default_factory=lambda: {"motion": {}, "text": {}}, validate_default=True)
    shard_clips: int = Field(default=64, ge=1)  # clips per WebDataset shard
    runner: Literal["local", "ray"] = "local"  # where videos fan out: local processes or a Ray cluster
    workers: int = Field(default=1, ge=1)  # parallel videos (local processes, or CPUs of a local Ray)
    ray_address: str | None = None  # a running Ray cluster ("ray://head:10001", "auto"); None: start one

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorers(cls, raw: Any) -> Any:
        from svd.curation.scorers import validate

        return validate(dict(raw or {}))


class Rule(Section):
    """Keep rows whose column is within [min, max] and outside the dropped tails; `drop_lowest` /
    `drop_highest` are fractions of the annotated set (LVD), so thresholds are percentiles recomputed
    per dataset, as the paper's filters are."""

    min: float | None = None
    max: float | None = None
    drop_lowest: float | None = Field(default=None, ge=0, lt=1)
    drop_highest: float | None = Field(default=None, ge=0, lt=1)


class FilterParams(Section):
    out: Path = Path("data/subsets")
    # Each subset is its rules, applied to the one before it: lvd (every ok clip) -> lvd_f -> hq.
    lvd_f: dict[str, Rule] = Field(
        default_factory=lambda: {"motion_score": Rule(drop_lowest=0.25), "text_area": Rule(max=0.07)}
    )
    hq: dict[str, Rule] = Field(
        default_factory=lambda: {
            "motion_score": Rule(drop_lowest=0.5),
            "text_area": Rule(max=0.02),
            "seconds": Rule(min=2.0),
        }
    )
    val_fraction: float = Field(default=0.2, ge=0, lt=1)


class VAEParams(Section):
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = Field(default=1, ge=1)  # res blocks per level; SD and SVD have 2
    latent_channels: int = 4


class UNetParams(Section):
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 2
    cross_attention_dim: int = 32
    num_attention_heads: tuple[int, ...] = (4, 4)  # per block, down order; SD 2.1 / SVD: 64 channels a head
    addition_time_embed_dim: int = 32

    @model_validator(mode="after")
    def _one_head_count_per_block(self) -> UNetParams:
        if len(self.num_attention_heads) != len(self.block_out_channels):
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} needs one entry per block of "
                f"block_out_channels {self.block_out_channels}"
            )
        for c, h in zip(self.block_out_channels, self.num_attention_heads, strict=True):
            if c % h:
                raise ValueError(f"{c} channels do not split into {h} attention heads")
        return self


class ImageEncoderParams(Section):
    """A CLIP vision transformer; its projection is the UNet's cross-attention context."""

    hidden_size: int = 32
    intermediate_size: int = 128
    projection_dim: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    image_size: int = 224  # diffusers' SVD pipeline always resizes to 224 for its encoder
    patch_size: int = 32


class TextEncoderParams(Section):
    """A CLIP text transformer; its last hidden states are the UNet's cross-attention context in
    text-to-image and text-to-video stages, as in SD 2.1 (OpenCLIP ViT-H's text tower, 23 layers)."""

    hidden_size: int = 32
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    vocab_size: int = Field(default=514, ge=514)  # at least the byte-level tokenizer's 256 x 2 + 2
    max_position_embeddings: int = 77  # tokens a caption is padded or cut to


class Architecture(Section):
    """The four networks' shapes: what a preset names."""

    vae: VAEParams = VAEParams()
    unet: UNetParams = UNetParams()
    image_encoder: ImageEncoderParams = ImageEncoderParams()
    text_encoder: TextEncoderParams = TextEncoderParams()

    @model_validator(mode="after")
    def _context_fits(self) -> Architecture:
        for name, dim in (
            ("image_encoder.projection_dim", self.image_encoder.projection_dim),
            ("text_encoder.hidden_size", self.text_encoder.hidden_size),
        ):
            if dim != self.unet.cross_attention_dim:
                raise ValueError(
                    f"{name} {dim} must equal unet.cross_attention_dim "
                    f"{self.unet.cross_attention_dim}: image and text embeddings are the UNet's "
                    "cross-attention context"
                )
        return self


class ModelParams(Section):
    """`preset` picks one of `presets` (params.yaml holds tiny, small and svd); `pretrained` loads
    weights instead of building random ones, and then the weights' own config rules."""

    preset: str = "tiny"
    pretrained: str | None = None
    image_encoder: str | None = None  # CLIP vision weights for an image-conditioned stage whose start
    # has none (SD 2.1 has none): a folder (or its image_encoder/) or hub id; null: the preset's, random
    presets: dict[str, Architecture] = Field(default_factory=lambda: {"tiny": Architecture()})

    @model_validator(mode="after")
    def _preset_exists(self) -> ModelParams:
        if self.preset not in self.presets:
            raise ValueError(f"model.preset {self.preset!r} is none of model.presets: {sorted(self.presets)}")
        return self

    @property
    def arch(self) -> Architecture:
        return self.presets[self.preset]


Subset = Literal["lvd", "lvd_f", "hq"]


Trainable = Literal["all", "time_embedding"]
Condition = Literal["image", "text"]


class PhaseParams(Section):
    """One phase of a stage: what changes from the stage's own settings, as the paper's table changes
    resolution, frames, noise schedule, lr and steps between phases of one stage."""

    resolution: tuple[int, int] | None = None
    frames: int | None = Field(default=None, ge=1)
    steps: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)
    p_mean: float | None = None
    p_std: float | None = Field(default=None, gt=0)
    trainable: Trainable | None = None


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
    condition: Condition = "image"  # the cross-attention context: the conditioning frame's CLIP
    # embedding (image-to-video, with its latent concatenated), or the clip's caption (text-to-video)
    cond_drop: float = Field(default=0.0, ge=0, le=1)
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    autoencoder_steps: int = Field(default=0, ge=0)
    autoencoder_lr: float = 1e-3
    autoencoder_frames: int = Field(default=4, ge=1)  # consecutive frames: the decoder is temporal
    autoencoder_batch_size: int = Field(default=4, ge=1)  # windows per step
    checkpoint_every: int = Field(default=50, ge=1)  # steps between resume points (<out>.resume)
    sample_every: int | None = Field(default=None, ge=1)  # steps between sample videos in the run
    latents: str | None = None  # a latent store (path or s3://) to read encoded clips from; None: encode
    trainable: Trainable = "all"  # time_embedding: only the UNet's timestep embedding learns
    phases: list[PhaseParams] = []  # run in order, each the stage's settings with its own on top

    def schedule(self) -> list[StageParams]:
        """The stage's phases as full settings: itself alone when it lists none."""
        if not self.phases:
            return [self]
        return [
            self.model_copy(update=ph.model_dump(exclude_none=True) | {"phases": []}) for ph in self.phases
        ]

    @model_validator(mode="after")
    def _store_needs_a_frozen_autoencoder(self) -> StageParams:
        if self.latents is not None and self.autoencoder_steps:
            raise ValueError(
                "latents: a stage that trains its autoencoder (autoencoder_steps > 0) cannot read "
                "latents stored by the encoder it replaces"
            )
        return self


class ComputeParams(Section):
    """How the stages run (svd.train.compute). Device and precision change the numbers a little;
    the others only the speed and memory."""

    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast; weights and optimizer stay fp32
    gradient_checkpointing: bool = False  # recompute activations in backward: memory for ~30% time
    attention: Literal["sdpa", "eager"] = "sdpa"  # PyTorch's fused kernels, or diffusers' plain maths
    compile: bool = False  # torch.compile the denoiser (first steps pay the compilation)
    channels_last: bool = False  # NHWC convolutions: faster on tensor cores, rarely on CPU
    data_workers: int = Field(default=0, ge=0)  # DataLoader processes decoding clips ahead; 0: inline
    parallel: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: replicate the denoiser, or shard it (FSDP2)


class TrainParams(Section):
    compute: ComputeParams = ComputeParams()
    image: StageParams
    video: StageParams
    finetune: StageParams


StageName = Literal["image", "video", "finetune"]
STAGES: tuple[StageName, ...] = ("image", "video", "finetune")


class ConditioningParams(Section):
    cond_aug_p_mean: float = -3.0
    cond_aug_p_std: float = 0.5


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
