"""The three networks every stage carries: autoencoder, denoising UNet, CLIP image encoder.

A stage's output is a diffusers folder (safetensors). Video stages are saved as a complete
StableVideoDiffusionPipeline folder, so `StableVideoDiffusionPipeline.from_pretrained(folder)` loads
what this project trains; the image stage saves the same three subfolders with a 2D UNet.
No weights can be downloaded on the machines this runs on by default, so `build_tiny` makes
small random models from params; `load` takes a local folder or a hub id (real SD 2.1 / SVD runs).
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
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from svd.params import ModelParams

UNet: TypeAlias = UNet2DConditionModel | UNetSpatioTemporalConditionModel
VAE: TypeAlias = AutoencoderKLTemporalDecoder | AutoencoderKL


@dataclass
class Components:
    vae: VAE
    unet: UNet
    image_encoder: CLIPVisionModelWithProjection

    @property
    def is_video(self) -> bool:
        return isinstance(self.unet, UNetSpatioTemporalConditionModel)


def downscale(block_out_channels: tuple[int, ...] | list[int]) -> int:
    """Pixels per latent along each side: the encoder halves the size between its blocks."""
    return 2 ** (len(block_out_channels) - 1)


def build_tiny(p: ModelParams, resolution: int) -> Components:
    latent_size = resolution // downscale(p.vae.block_out_channels)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=list(p.vae.block_out_channels),
        down_block_types=["DownEncoderBlock2D"] * len(p.vae.block_out_channels),
        latent_channels=p.vae.latent_channels,
        sample_size=resolution,
        scaling_factor=1.0,  # measured on data after Stage I trains the autoencoder
    )
    n = len(p.unet.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=p.vae.latent_channels,
        out_channels=p.vae.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        block_out_channels=tuple(p.unet.block_out_channels),
        layers_per_block=p.unet.layers_per_block,
        cross_attention_dim=p.unet.cross_attention_dim,
        attention_head_dim=p.unet.num_attention_heads,  # diffusers' legacy name for the head count
        use_linear_projection=True,  # as SD 2.1 and the spatio-temporal blocks
    )
    e = p.image_encoder
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=e.hidden_size,
            projection_dim=p.unet.cross_attention_dim,
            num_hidden_layers=e.num_hidden_layers,
            num_attention_heads=e.num_attention_heads,
            intermediate_size=4 * e.hidden_size,
            image_size=e.image_size,
            patch_size=e.patch_size,
        )
    )
    return Components(vae, unet, image_encoder)


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
    if c.is_video:
        size = c.image_encoder.config.image_size
        StableVideoDiffusionPipeline(
            vae=c.vae,
            image_encoder=c.image_encoder,
            unet=c.unet,
            scheduler=svd_scheduler(),
            feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size=size),
        ).save_pretrained(tmp, safe_serialization=True)
    else:
        for name in ("vae", "unet", "image_encoder"):
            getattr(c, name).save_pretrained(tmp / name, safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load(ref: str | Path) -> Components:
    """Load from a local diffusers folder or a hub id; the UNet class is read from its config."""
    unet_cls = _class_name(ref, "unet")
    unet: UNet = (
        UNetSpatioTemporalConditionModel.from_pretrained(ref, subfolder="unet")
        if unet_cls == "UNetSpatioTemporalConditionModel"
        else UNet2DConditionModel.from_pretrained(ref, subfolder="unet")
    )
    vae: VAE = (
        AutoencoderKL.from_pretrained(ref, subfolder="vae")
        if _class_name(ref, "vae") == "AutoencoderKL"  # SD 2.1's image autoencoder
        else AutoencoderKLTemporalDecoder.from_pretrained(ref, subfolder="vae")
    )
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(ref, subfolder="image_encoder")
    return Components(vae, unet, image_encoder)


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
