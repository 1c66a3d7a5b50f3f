"""Image-to-video and text-to-video inference with our EDM Euler sampler: the code path evaluation,
the registered MLflow model, the samples of a training run and `svd generate` share."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from svd.diffusion.sampler import euler_sample
from svd.model.components import Components, downscale
from svd.model.conditioning import decode, text_embed, text_video_condition, video_condition
from svd.model.denoiser import EVAL_COND_AUG, denoiser


@torch.no_grad()
def sample_latents(
    c: Components,
    image: np.ndarray,  # (H, W, 3) uint8 RGB
    frames: int,
    fps: int,
    motion_bucket: int,
    steps: int = 25,
    guidance: tuple[float, float] = (1.0, 2.5),
    seed: int = 0,
    cond_aug: float = EVAL_COND_AUG,
    size: tuple[int, int] | None = None,  # (height, width) in pixels; default the UNet's square size
) -> torch.Tensor:
    """(1, F, C, h, w) scaled latents; for one seed the same as diffusers' StableVideoDiffusionPipeline
    with output_type="latent" (random draws in its order: conditioning noise, then starting noise)."""
    if not c.is_image_to_video:
        raise ValueError("image_to_video needs an image-to-video UNet (in_channels 2C, a video stage's)")
    # 1. Conditioning frame at the model's resolution, in [-1, 1]
    h, w = pixel_size(c, size)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 * 2 - 1  # (H, W, 3) -> (1, 3, H, W)
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    # 2. Conditional and zeroed (unconditional) conditioning
    g = torch.Generator().manual_seed(seed)
    one = torch.ones(1)
    noise = torch.randn(x.shape, generator=g)
    cond = video_condition(c, x, frames, one * fps, one * motion_bucket, one * cond_aug, noise)
    uncond = dict(
        cond,
        concat=torch.zeros_like(cond["concat"]),
        encoder_hidden_states=torch.zeros_like(cond["encoder_hidden_states"]),
    )
    # 3. Sample
    return _sample(c, cond, uncond, frames, (h, w), steps, guidance, g)


def pixel_size(c: Components, size: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) in pixels: `size`, or the UNet's square sample size."""
    return size or (c.unet.config.sample_size * downscale(c.vae.config.block_out_channels),) * 2


def _sample(
    c: Components,
    cond: dict[str, torch.Tensor],
    uncond: dict[str, torch.Tensor],
    frames: int,
    size: tuple[int, int],  # (height, width) in pixels
    steps: int,
    guidance: tuple[float, float],
    g: torch.Generator,
) -> torch.Tensor:
    d = denoiser(c).eval()
    scale = downscale(c.vae.config.block_out_channels)

    def denoise(xt: torch.Tensor, sigma: torch.Tensor, conditional: bool) -> torch.Tensor:
        return d(xt, sigma, **(cond if conditional else uncond))

    shape = (1, frames, c.unet.config.out_channels, size[0] // scale, size[1] // scale)
    return euler_sample(denoise, shape, steps, guidance, generator=g)


@torch.no_grad()
def text_to_video(
    c: Components,
    caption: str,
    frames: int,
    fps: int,
    motion_bucket: int,
    steps: int = 25,
    guidance: tuple[float, float] = (1.0, 2.5),
    seed: int = 0,
    size: tuple[int, int] | None = None,  # (height, width) in pixels; default the UNet's square size
) -> np.ndarray:
    """(F, H, W, 3) uint8 from a text-to-video model (the base video model, Stage II in text mode);
    guidance against the empty caption, as the model learnt it by caption dropout."""
    if not c.is_video or c.is_image_to_video:
        raise ValueError(
            "text_to_video needs a text-to-video UNet (a video stage trained with condition: text)"
        )
    one = torch.ones(1)
    text, empty = text_embed(c, [caption, ""]).split(1)
    cond = text_video_condition(text, one * fps, one * motion_bucket)
    uncond = dict(cond, encoder_hidden_states=empty)
    g = torch.Generator().manual_seed(seed)
    latents = _sample(c, cond, uncond, frames, pixel_size(c, size), steps, guidance, g)
    return _pixels(decode(c.vae, latents)[0])


@torch.no_grad()
def image_to_video(
    c: Components,
    image: np.ndarray,
    frames: int,
    fps: int,
    motion_bucket: int,
    steps: int = 25,
    guidance: tuple[float, float] = (1.0, 2.5),
    seed: int = 0,
    cond_aug: float = EVAL_COND_AUG,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """(F, H, W, 3) uint8 at `size` (default the UNet's square size). All frames decode at once:
    the temporal decoder sees the clip."""
    latents = sample_latents(c, image, frames, fps, motion_bucket, steps, guidance, seed, cond_aug, size)
    return _pixels(decode(c.vae, latents)[0])


def _pixels(video: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return ((video + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
