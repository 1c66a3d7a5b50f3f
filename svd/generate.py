"""Image-to-video inference with our EDM Euler sampler: the code path evaluation, the registered
MLflow model and `svd generate` share."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from svd.diffusion.sampler import euler_sample
from svd.model.components import Components, downscale
from svd.model.conditioning import decode, video_condition
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
    if not c.is_video:
        raise ValueError("image_to_video needs a video UNet (a Stage II or III model), got a 2D UNet")
    # 1. Conditioning frame at the model's resolution, in [-1, 1]
    scale = downscale(c.vae.config.block_out_channels)
    h, w = size or (c.unet.config.sample_size * scale,) * 2
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
    d = denoiser(c).eval()

    def denoise(xt: torch.Tensor, sigma: torch.Tensor, conditional: bool) -> torch.Tensor:
        return d(xt, sigma, **(cond if conditional else uncond))

    # 3. Sample
    shape = (1, frames, c.unet.config.out_channels, h // scale, w // scale)
    return euler_sample(denoise, shape, steps, guidance, generator=g)


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
    video = decode(c.vae, latents)[0]  # (F, 3, H, W)
    return ((video + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
