"""The networks a stage carries: autoencoder, denoising UNet, and the encoders of what it is
conditioned on: a CLIP image encoder (image-to-video) and a CLIP text encoder with its tokenizer
(text-to-image, text-to-video).

A stage's output is a diffusers folder (safetensors). An image-to-video model is saved as a complete
StableVideoDiffusionPipeline folder, so `StableVideoDiffusionPipeline.from_pretrained(folder)` loads
what this project trains; other stages save the same subfolders (vae, unet, image_encoder,
text_encoder, tokenizer: those they have), as SD 2.1 is laid out. No weights can be downloaded on
the machines this runs on by default, so `build` makes random models of a params.yaml preset; `load`
takes a local folder or a hub id (real SD 2.1 / SVD runs).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from svd.model.motion import MotionBuckets
from svd.params import Architecture, ImageEncoderParams

UNet: TypeAlias = UNet2DConditionModel | UNetSpatioTemporalConditionModel
VAE: TypeAlias = AutoencoderKLTemporalDecoder | AutoencoderKL


SUBFOLDERS = ("vae", "unet", "image_encoder", "text_encoder", "tokenizer")


@dataclass
class Components:
    vae: VAE
    unet: UNet
    image_encoder: CLIPVisionModelWithProjection | None = None  # SD 2.1 has none
    text_encoder: CLIPTextModel | None = None  # SVD has none
    tokenizer: CLIPTokenizer | None = None
    motion: MotionBuckets | None = None  # a video model's motion score -> bucket map (svd.model.motion)

    @property
    def is_video(self) -> bool:
        return isinstance(self.unet, UNetSpatioTemporalConditionModel)

    @property
    def is_image_to_video(self) -> bool:
        """A video UNet that takes the conditioning frame's latent beside its input (in_channels 2C);
        a text-to-video UNet takes the noisy latent alone."""
        return self.is_video and self.unet.config.in_channels == 2 * self.vae.config.latent_channels


def downscale(block_out_channels: tuple[int, ...] | list[int]) -> int:
    """Pixels per latent along each side: the encoder halves the size between its blocks."""
    return 2 ** (len(block_out_channels) - 1)


def build(a: Architecture, resolution: int) -> Components:
    """Random networks of architecture `a`, the image UNet of Stage I among them (Stage II inflates
    it). The UNet is SD 2.1's kind: linear projections, a head count per block."""
    latent_size = resolution // downscale(a.vae.block_out_channels)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=list(a.vae.block_out_channels),
        down_block_types=["DownEncoderBlock2D"] * len(a.vae.block_out_channels),
        layers_per_block=a.vae.layers_per_block,
        latent_channels=a.vae.latent_channels,
        sample_size=resolution,
        scaling_factor=1.0,  # measured on data after Stage I trains the autoencoder
    )
    n = len(a.unet.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=a.vae.latent_channels,
        out_channels=a.vae.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        block_out_channels=tuple(a.unet.block_out_channels),
        layers_per_block=a.unet.layers_per_block,
        cross_attention_dim=a.unet.cross_attention_dim,
        attention_head_dim=a.unet.num_attention_heads,  # legacy name; SD 2.1's config gives head counts
        use_linear_projection=True,  # as SD 2.1 and the spatio-temporal blocks
    )
    t = a.text_encoder
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=t.hidden_size,
            intermediate_size=t.intermediate_size,
            num_hidden_layers=t.num_hidden_layers,
            num_attention_heads=t.num_attention_heads,
            vocab_size=t.vocab_size,
            max_position_embeddings=t.max_position_embeddings,
            hidden_act="gelu",  # OpenCLIP ViT-H's text tower, as SD 2.1 ships it
            bos_token_id=BYTE_VOCAB - 2,  # the tokenizer built with it
            eos_token_id=BYTE_VOCAB - 1,
        )
    )
    return Components(
        vae, unet, image_encoder(a.image_encoder), text_encoder, byte_tokenizer(t.max_position_embeddings)
    )


def image_encoder(e: ImageEncoderParams) -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=e.hidden_size,
            intermediate_size=e.intermediate_size,
            projection_dim=e.projection_dim,
            num_hidden_layers=e.num_hidden_layers,
            num_attention_heads=e.num_attention_heads,
            image_size=e.image_size,
            patch_size=e.patch_size,
            hidden_act="gelu",  # ViT-H/14 as SVD ships it; CLIPVisionConfig's default is quick_gelu
        )
    )


BYTE_VOCAB = 2 * 256 + 2


def byte_tokenizer(max_length: int) -> CLIPTokenizer:
    """CLIP's tokenizer with its byte alphabet and no merges: every byte of a caption is a token.
    The real format (CLIP's 49,408-token vocabulary is these 514 plus 48,894 merges), so a model
    built from a preset round-trips through diffusers like SD 2.1's, without a download."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    others = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(others)) for b in range(256)]  # GPT-2's byte map
    tokens = chars + [ch + "</w>" for ch in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


def svd_scheduler() -> EulerDiscreteScheduler:
    """The scheduler config SVD ships: v-prediction, continuous 0.25 ln sigma timesteps, Karras sigmas."""
    return EulerDiscreteScheduler(
        prediction_type="v_prediction",
        timestep_type="continuous",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        interpolation_type="linear",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
    )


def save(c: Components, folder: Path) -> None:
    """Write atomically: a half-written checkpoint folder must never look like a finished one."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if c.is_image_to_video and c.image_encoder is not None:
        size = c.image_encoder.config.image_size
        StableVideoDiffusionPipeline(
            vae=c.vae,
            image_encoder=c.image_encoder,
            unet=c.unet,
            scheduler=svd_scheduler(),
            feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size=size),
        ).save_pretrained(tmp, safe_serialization=True)
    for name in SUBFOLDERS:
        part = getattr(c, name)
        if part is not None and not (tmp / name).exists():
            part.save_pretrained(tmp / name, **({} if name == "tokenizer" else {"safe_serialization": True}))
    if c.motion is not None:
        c.motion.save(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load(ref: str | Path) -> Components:
    """Load from a local diffusers folder or a hub id: an SVD folder, an SD 2.1 folder, or a stage of
    ours. The UNet and VAE classes are read from their configs; each encoder is loaded if present.
    Weights come from safetensors files only: a folder holding only pickled ones (.bin) is an error,
    never unpickled, since unpickling a file from elsewhere can run any code."""
    unet_cls = _class_name(ref, "unet")
    unet: UNet = (
        UNetSpatioTemporalConditionModel.from_pretrained(ref, subfolder="unet", use_safetensors=True)
        if unet_cls == "UNetSpatioTemporalConditionModel"
        else UNet2DConditionModel.from_pretrained(ref, subfolder="unet", use_safetensors=True)
    )
    vae: VAE = (
        AutoencoderKL.from_pretrained(ref, subfolder="vae", use_safetensors=True)
        if _class_name(ref, "vae") == "AutoencoderKL"  # SD 2.1's image autoencoder
        else AutoencoderKLTemporalDecoder.from_pretrained(ref, subfolder="vae", use_safetensors=True)
    )
    has = _subfolders(ref)
    return Components(
        vae,
        unet,
        CLIPVisionModelWithProjection.from_pretrained(ref, subfolder="image_encoder", use_safetensors=True)
        if "image_encoder" in has
        else None,
        CLIPTextModel.from_pretrained(ref, subfolder="text_encoder", use_safetensors=True)
        if "text_encoder" in has
        else None,
        CLIPTokenizer.from_pretrained(ref, subfolder="tokenizer") if "tokenizer" in has else None,
        MotionBuckets.load(ref),
    )


def load_image_encoder(ref: str | Path) -> CLIPVisionModelWithProjection:
    """From a model folder's image_encoder/ (SVD's), or a CLIP vision model folder or hub id."""
    if "image_encoder" in _subfolders(ref):
        return CLIPVisionModelWithProjection.from_pretrained(
            ref, subfolder="image_encoder", use_safetensors=True
        )
    return CLIPVisionModelWithProjection.from_pretrained(ref, use_safetensors=True)


def _subfolders(ref: str | Path) -> set[str]:
    """The components a folder has; for a hub id, those its model_index.json lists (a cached file,
    so an offline machine with the weights cached loads them as before)."""
    if Path(ref).is_dir():
        return {name for name in SUBFOLDERS if (Path(ref) / name).is_dir()}
    from huggingface_hub import hf_hub_download  # only reached for hub ids

    index = json.loads(Path(hf_hub_download(str(ref), "model_index.json")).read_text())
    return {k for k, v in index.items() if isinstance(v, list) and v[0] is not None} & set(SUBFOLDERS)


def _class_name(ref: str | Path, subfolder: str) -> str:
    local = Path(ref) / subfolder / "config.json"
    if local.exists():
        return json.loads(local.read_text())["_class_name"]
    from huggingface_hub import hf_hub_download  # only reached for hub ids

    return json.loads(Path(hf_hub_download(str(ref), "config.json", subfolder=subfolder)).read_text())[
        "_class_name"
    ]


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(a: Architecture, frames: int = 14) -> str:
    """The architecture as a table, built on the meta device: shapes without one byte of weights, so
    the 1.5-billion-parameter `svd` preset prints in a second on a laptop."""
    from svd.model.inflate import inflate

    with torch.device("meta"):
        c = build(a, resolution=64 * downscale(a.vae.block_out_channels))
        video = inflate(c.unet, a.unet.addition_time_embed_dim, frames)
    u = a.unet
    lines = [f"{'block':>6} {'channels':>9} {'heads':>6} {'head dim':>9}"]
    lines += [
        f"{i:>6} {ch:>9} {h:>6} {ch // h:>9}"
        for i, (ch, h) in enumerate(zip(u.block_out_channels, u.num_attention_heads, strict=True))
    ]
    lines += [
        f"UNet, video ({frames} frames, in_channels {video.config.in_channels}): "
        f"{count_parameters(video):,} parameters",
        f"UNet, image (Stage I): {count_parameters(c.unet):,}",
        f"VAE, temporal decoder ({a.vae.layers_per_block} res blocks a level): {count_parameters(c.vae):,}",
        f"image encoder (CLIP ViT, {a.image_encoder.num_hidden_layers} layers, projection "
        f"{a.image_encoder.projection_dim}): {count_parameters(c.image_encoder):,}",  # type: ignore[arg-type]
        f"text encoder (CLIP text, {a.text_encoder.num_hidden_layers} layers, width "
        f"{a.text_encoder.hidden_size}): {count_parameters(c.text_encoder):,}",  # type: ignore[arg-type]
    ]
    return "\n".join(lines)
