"""Typed, frozen view of params.yaml.

Every section is a pydantic model that rejects unknown keys, so a typo in params.yaml fails at load
time with the key's name instead of silently falling back to a default halfway through a run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SynthParams(Section):
    out: Path = Field(
        default=Path("data/raw"), description="Folder the corpus and its ground_truth.json go to"
    )
    videos: int = Field(default=8, ge=1, description="Videos in the corpus")
    fps: int = Field(default=12, ge=4, description="Frame rate of every video")
    width: int = Field(default=128, description="Frame width, pixels")
    height: int = Field(default=96, description="Frame height, pixels")
    segments: tuple[int, int] = Field(default=(3, 5), description="Scenes per video, inclusive range")
    segment_seconds: tuple[float, float] = Field(default=(2.5, 4.0), description="Seconds per scene, range")
    fade_every: int = Field(
        default=3, ge=1, description="Every k-th transition (across the corpus) is a fade"
    )
    fade_frames: int = Field(default=12, ge=2, description="Frames of a fade through black")
    dissolve_every: int = Field(
        default=4, ge=1, description="Every k-th transition is a dissolve, unless a fade"
    )
    dissolve_frames: int = Field(default=8, ge=1, description="Frames of a dissolve")
    short_every: int = Field(
        default=10, ge=1, description="Every k-th inner segment is sub-second, cut on both sides"
    )
    short_seconds: tuple[float, float] = Field(
        default=(0.3, 0.8), description="Seconds of a sub-second scene, range"
    )
    text_fraction: float = Field(
        default=0.3, ge=0, le=1, description="Share of scenes that carry a text overlay"
    )
    text_areas: tuple[float, float] = Field(
        default=(0.02, 0.16), description="(small, large) overlay box / frame area"
    )
    slow_speed: float = Field(default=0.75, gt=0, description="Pixels per frame of the shapes in slow scenes")
    fast_speed: float = Field(default=3.0, gt=0, description="Pixels per frame of the shapes in fast scenes")
    gop: int = Field(default=6, ge=1, description="Keyframe interval of the encoded videos")


class CutParams(Section):
    """svd.curation.scenes: hard cuts by PySceneDetect, fades and dissolves by a blend test."""

    content_threshold: float = Field(
        default=27.0, description="ContentDetector: HSV change between two frames that is a cut"
    )
    adaptive_threshold: float = Field(
        default=3.0, description="AdaptiveDetector: that change over its neighbours' average"
    )
    min_cut_change: float = Field(
        default=8.0, description="Mean |RGB change| (0-255) across a cut: a hue flicker is no cut"
    )
    fade_threshold: float = Field(
        default=12.0, description="Mean pixel value (0-255) at or below which a frame is black"
    )
    downscale_width: int = Field(default=128, ge=16, description="Detection runs on frames this wide")
    max_transition_seconds: float = Field(default=2.0, gt=0, description="Longest fade or dissolve found")
    min_transition_change: float = Field(
        default=20.0, gt=0, description="Mean |F_end - F_start| of one (0-255)"
    )
    min_straightness: float = Field(
        default=0.6, gt=0, le=1, description="That change / summed frame-to-frame change"
    )
    blend_agreement: float = Field(
        default=0.5, gt=0, le=1, description="Share of changing pixels a blend moves in step"
    )
    motion_residual: float = Field(
        default=0.5, ge=0, le=1, description="At most this change left once moved: motion"
    )
    learned: bool = Field(
        default=False, description="Add TransNetV2's transitions (a learned detector; slow on a CPU)"
    )
    learned_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="TransNetV2: per-frame probability that is a transition"
    )
    learned_device: Literal["cpu", "auto", "cuda"] = Field(  # svd.curation.scorers.base.Device
        default="cpu", description="TransNetV2 runs on: cpu, cuda, or auto (CUDA when present)"
    )


class CurateParams(Section):
    """Raw videos -> WebDataset shards of clips and the clip table (svd.curation)."""

    sources: tuple[str, ...] = Field(
        default=("data/raw",), description="Folders or s3://bucket/prefix URIs of raw videos"
    )
    out: str = Field(default="data/curated", description="Folder or s3:// URI: clips.parquet + shards/*.tar")
    cache: str = Field(
        default="data/cache", description="Content-addressed annotation cache, folder or s3:// URI"
    )
    cuts: CutParams = Field(default=CutParams(), description="Scene cut detection")
    min_clip_seconds: float = Field(
        default=1.0, gt=0, description="Shorter scenes give no clip (never merged)"
    )
    scorers: dict[str, Any] = Field(
        default_factory=lambda: {
            "motion": {},
            "text": {},
            "aesthetics": {},
            "fingerprint": {},
            "captioners": {},
        },
        validate_default=True,
        description="Scorers to run, one file each in svd/curation/scorers/, with their settings",
    )
    shard_clips: int = Field(default=64, ge=1, description="Clips per WebDataset shard")
    runner: Literal["local", "ray"] = Field(
        default="local", description="Where videos fan out: local processes or a Ray cluster"
    )
    workers: int = Field(
        default=1, ge=1, description="Parallel videos (local processes, or CPUs of a local Ray)"
    )
    videos_per_task: int = Field(
        default=0,
        ge=0,
        description="Videos one task annotates; 0: a quarter of each worker's share, at most 16",
    )
    ray_address: str | None = Field(
        default=None, description='A running Ray cluster ("ray://head:10001", "auto"); None: start one'
    )
    gpus_per_video: float = Field(
        default=0.0,
        ge=0,
        description="runner ray: the share of a GPU each task (one video at a time) asks Ray for"
        " (0.25: four videos per GPU at once), for scorers with device cuda or auto; 0: none",
    )

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorers(cls, raw: Any) -> Any:
        from svd.curation.scorers import validate

        return validate(dict(raw or {}))


class Rule(Section):
    """Keep rows whose column is within [min, max] and outside the dropped tails; `drop_lowest` /
    `drop_highest` are fractions of the annotated set (LVD), so thresholds are percentiles recomputed
    per dataset, as the paper's filters are."""

    min: float | None = Field(default=None, description="Keep rows whose value is at least this")
    max: float | None = Field(default=None, description="Keep rows whose value is at most this")
    drop_lowest: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Drop this fraction of LVD with the lowest values (a percentile)",
    )
    drop_highest: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Drop this fraction of LVD with the highest values (a percentile)",
    )


class FilterParams(Section):
    out: Path = Field(default=Path("data/subsets"), description="Folder of the subsets' Parquet tables")
    # Each subset is its rules, applied to the one before it: lvd (every ok clip) -> lvd_f -> hq.
    lvd_f: dict[str, Rule] = Field(
        description="LVD-F's rules (per column of the clip table), applied to LVD",
        default_factory=lambda: {
            "motion_score": Rule(drop_lowest=0.25),
            "text_area": Rule(max=0.07),
            "aesthetic_score": Rule(drop_lowest=0.25),
            "caption_similarity": Rule(drop_lowest=0.5),
        },
    )
    near_duplicates: dict[str, float] | None = Field(
        default_factory=lambda: {"thumb": 0.3, "clip": 0.05},
        description="LVD-F keeps one clip of each group whose fingerprints are within this cosine"
        " distance, per fingerprint kind (thumb, clip); null keeps near-duplicates",
    )
    hq: dict[str, Rule] = Field(
        description="HQ's rules (Stage III's subset), applied to LVD-F",
        default_factory=lambda: {
            "motion_score": Rule(drop_lowest=0.5),
            "text_area": Rule(max=0.02),
            "seconds": Rule(min=2.0),
        },
    )
    val_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Share of clips held out (by hash of the clip key) for validation and evaluation",
    )


class VAEParams(Section):
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = Field(default=1, ge=1, description="Res blocks per level; SD and SVD have 2")
    latent_channels: int = 4


class UNetParams(Section):
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 2
    cross_attention_dim: int = 32
    num_attention_heads: tuple[int, ...] = Field(
        default=(4, 4), description="Per block, down order; SD 2.1 / SVD: 64 channels a head"
    )
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
    image_size: int = Field(
        default=224, description="Diffusers' SVD pipeline always resizes to 224 for its encoder"
    )
    patch_size: int = 32


class TextEncoderParams(Section):
    """A CLIP text transformer; its last hidden states are the UNet's cross-attention context in
    text-to-image and text-to-video stages, as in SD 2.1 (OpenCLIP ViT-H's text tower, 23 layers)."""

    hidden_size: int = 32
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    vocab_size: int = Field(
        default=514, ge=514, description="At least the byte-level tokenizer's 256 x 2 + 2"
    )
    max_position_embeddings: int = Field(default=77, description="Tokens a caption is padded or cut to")


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
    image_encoder: str | None = Field(
        default=None,
        description=(
            "CLIP vision weights for an image-conditioned stage whose start has none (SD 2.1 has none): a "
            "folder (or its image_encoder/) or hub id; null: the preset's, random"
        ),
    )
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

    out: Path = Field(description="Folder the stage's model is saved to")
    init: Path | None = Field(
        default=None,
        description=(
            "Model folder the stage starts from (the previous stage's out); none: model.pretrained or the "
            "preset at random"
        ),
    )
    subset: Subset = Field(description="Subset the stage trains on")
    resolution: tuple[int, int] = Field(description="(height, width) in pixels")
    frames: int = Field(ge=1, description="Frames per training clip")
    fps: int = Field(
        default=6, description="Frame rate clips are sampled at (and the model is conditioned on)"
    )
    steps: int = Field(ge=1, description="Optimizer steps")
    batch_size: int = Field(ge=1, description="Clips per step (per process under torchrun)")
    lr: float = Field(gt=0, description="AdamW learning rate")
    p_mean: float = Field(description="EDM: mean of ln(sigma) of the training noise")
    p_std: float = Field(gt=0, description="EDM: std of ln(sigma) of the training noise")
    condition: Condition = Field(
        default="image",
        description=(
            "The cross-attention context: the conditioning frame's CLIP embedding (image-to-video, with its "
            "latent concatenated), or the clip's caption (text-to-video)"
        ),
    )
    cond_drop: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of steps with the conditioning dropped, for classifier-free guidance",
    )
    ema_decay: float | None = Field(
        default=None, gt=0, lt=1, description="Decay of the weights' exponential moving average; none: no EMA"
    )
    autoencoder_steps: int = Field(
        default=0, ge=0, description="Steps training the autoencoder's temporal decoder before the denoiser"
    )
    autoencoder_lr: float = Field(default=1e-3, description="Learning rate of those steps")
    autoencoder_frames: int = Field(
        default=4, ge=1, description="Consecutive frames: the decoder is temporal"
    )
    autoencoder_batch_size: int = Field(default=4, ge=1, description="Windows per step")
    checkpoint_every: int = Field(default=50, ge=1, description="Steps between resume points (<out>.resume)")
    sample_every: int | None = Field(default=None, ge=1, description="Steps between sample videos in the run")
    latents: str | None = Field(
        default=None, description="A latent store (path or s3://) to read encoded clips from; None: encode"
    )
    trainable: Trainable = Field(
        default="all", description="Time_embedding: only the UNet's timestep embedding learns"
    )
    phases: list[PhaseParams] = Field(
        default=[], description="Run in order, each the stage's settings with its own on top"
    )

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
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="Bf16: autocast; weights and optimizer stay fp32"
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in backward: memory for ~30% time"
    )
    checkpoint_layers: Literal["all", "resnets", "attention"] = Field(
        default="all",
        description="With gradient_checkpointing, the UNet layers it recomputes; the others keep"
        " their activations, spending memory to run their forward once",
    )
    attention: Literal["sdpa", "eager"] = Field(
        default="sdpa", description="PyTorch's fused kernels, or diffusers' plain maths"
    )
    compile: bool = Field(
        default=False,
        description="Torch.compile each of the UNet's layers (the first steps pay the compilation)",
    )
    channels_last: bool = Field(
        default=False, description="NHWC convolutions: faster on tensor cores, rarely on CPU"
    )
    data_workers: int = Field(
        default=0, ge=0, description="DataLoader processes decoding clips ahead; 0: inline"
    )
    parallel: Literal["ddp", "fsdp"] = Field(
        default="ddp", description="Under torchrun: replicate the denoiser, or shard it (FSDP2)"
    )


class TrainParams(Section):
    compute: ComputeParams = ComputeParams()
    image: StageParams
    video: StageParams
    finetune: StageParams


StageName = Literal["image", "video", "finetune"]
STAGES: tuple[StageName, ...] = ("image", "video", "finetune")


class PoolsParams(Section):
    """Where the pipeline flow trains each stage: in its own process, or through the stage's
    deployment `train-<stage>-<pool>` on a Prefect work pool (gpu: Kubernetes, under torchrun).
    Where, not what: no DVC stage reads this section, so moving a stage re-runs nothing."""

    image: str | None = Field(
        default=None, description="Work pool of Stage I; null: in the pipeline's process"
    )
    video: str | None = Field(
        default=None, description="Work pool of Stage II; null: in the pipeline's process"
    )
    finetune: str | None = Field(
        default=None, description="Work pool of Stage III; null: in the pipeline's process"
    )


class ConditioningParams(Section):
    cond_aug_p_mean: float = Field(
        default=-3.0, description="Noise added to the conditioning frame: mean of ln(sigma)"
    )
    cond_aug_p_std: float = Field(
        default=0.5, description="Noise added to the conditioning frame: std of ln(sigma)"
    )


class EvaluateParams(Section):
    out: Path = Field(default=Path("reports/eval"), description="Folder of metrics.json and the samples")
    subset: Subset = Field(default="lvd_f", description="Subset whose held-out clips condition the samples")
    sigmas: tuple[float, ...] = Field(
        default=(0.05, 0.2, 0.5, 1.0, 2.0, 5.0), description="Noise levels of the validation loss"
    )
    steps: int = Field(default=12, description="Sampler steps per video")
    guidance: tuple[float, float] = Field(
        default=(1.0, 2.5),
        description="Classifier-free guidance, linear over frames from the first to the second",
    )
    motion_buckets: tuple[int, ...] = Field(
        default=(0, 64, 128, 192, 255),
        description=(
            "Motion buckets sampled; their Spearman with measured motion is the motion-control metric"
        ),
    )
    fps: int = Field(default=6, description="Frame rate the samples are conditioned on")
    samples: int = Field(
        default=2, ge=1, description="Conditioning frames (held-out clips) per motion bucket"
    )
    fvd_model: str | None = Field(
        default=None,
        description="I3D TorchScript for FVD (Brooks et al.'s i3d_torchscript.pt); none: FVD not computed",
    )


class Gates(Section):
    max_val_loss: float | None = Field(
        default=None, description="Champion only if the validation loss is at most this; none: not gated"
    )
    min_motion_spearman: float | None = Field(
        default=None, description="Champion only if motion control reaches this Spearman; none: not gated"
    )


# The evaluation metrics a champion is compared on, and which way is better.
MARGIN_METRICS: dict[str, Literal["lower", "higher"]] = {
    "val_loss": "lower",
    "fvd": "lower",
    "temporal_warping_error": "lower",
    "motion_spearman": "higher",
    "first_frame_psnr": "higher",
    "first_frame_ssim": "higher",
}


class RegisterParams(Section):
    out: Path = Field(
        default=Path("reports/registration.json"),
        description="Where the registration (name, version, aliases) is written",
    )
    name: str = Field(default="svd-tiny", description="Registered model name")
    gates: Gates = Field(default=Gates(), description="Every gate must pass for the champion alias")
    margins: dict[str, float] = Field(
        default_factory=lambda: {"val_loss": 0.0},
        description="A candidate replaces the champion only if it beats it on each of these metrics by"
        " at least this much (val_loss, fvd, temporal_warping_error: lower; others: higher)",
    )

    @field_validator("margins")
    @classmethod
    def _known(cls, margins: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(margins) - set(MARGIN_METRICS))
        if unknown:  # a typo would silently switch a margin off
            raise ValueError(
                f"register.margins: no metric {unknown}; evaluation reports {sorted(MARGIN_METRICS)}"
            )
        return margins


Tail = Literal["lowest", "highest"]
LVD_F_TAILS: dict[str, Tail] = {  # the tail each of LVD-F's filters drops
    "motion_score": "lowest",
    "text_area": "highest",
    "aesthetic_score": "lowest",
    "caption_similarity": "lowest",
}


class AblateParams(Section):
    """The threshold ablation (svd.steps.ablate), as the paper chose its filters: one annotation at a
    time, each cut, an identical small model per arm."""

    out: Path = Field(default=Path("reports/ablation"), description="Folder of the arms, results and plot")
    stage: StageName = Field(default="video", description="The stage whose settings every arm trains with")
    steps: int = Field(default=20, ge=1, description="Optimizer steps per arm (small, identical models)")
    cuts: tuple[float, ...] = Field(
        default=(0.125, 0.25, 0.5), description="Shares of LVD each arm drops on its annotation"
    )
    annotations: dict[str, Tail] = Field(
        default_factory=lambda: dict(LVD_F_TAILS),
        description="Clip-table columns to ablate, and which tail of each a filter drops",
    )


with warnings.catch_warnings():  # the `register` step's section shadows ABCMeta.register, unused here
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class Params(Section):
        seed: int = 0
        synth: SynthParams = SynthParams()
        curate: CurateParams = CurateParams()
        filter: FilterParams = FilterParams()
        model: ModelParams = ModelParams()
        train: TrainParams
        pools: PoolsParams = PoolsParams()
        conditioning: ConditioningParams = ConditioningParams()
        evaluate: EvaluateParams = EvaluateParams()
        register: RegisterParams = RegisterParams()
        ablate: AblateParams = AblateParams()

        def stage(self, name: StageName) -> StageParams:
            return getattr(self.train, name)


class ParamsError(ValueError):
    pass


def read_yaml(path: Path) -> Any:
    """A YAML file, parsed by libyaml where PyYAML was built with it (the same safe constructor):
    each step reads params.yaml, dvc.yaml and dvc.lock (tens of kB) as it starts, and the
    pure-Python parser took 0.6 s of each warm stage's 1.2 s outside its step."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read params.yaml, deep-merge `overrides` (e.g. a test profile) and validate."""
    path = Path(path)
    raw = read_yaml(path) or {}
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
