"""EDM Euler sampler with classifier-free guidance whose scale rises linearly over frames.

Following edm's generate.py, the step maths runs in float64 and the network in its own dtype.
SVD guides frame 0 (the conditioning frame) least and the last frame most: a per-frame guidance
scale of linspace(min, max, frames), the negative branch using zeroed conditioning.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor, bool], Tensor]  # D(x, sigma, conditional) -> denoised


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> Tensor:
    """Noise levels from sigma_max down to sigma_min, then a final 0 (Karras et al. eq. 5)."""
    i = torch.arange(steps, dtype=torch.float64)
    ramp = sigma_max ** (1 / rho) + i / max(steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([ramp**rho, torch.zeros(1, dtype=torch.float64)])


def frame_guidance(frames: int, scale: tuple[float, float]) -> Tensor:
    """(F,) guidance scale per frame, linear from scale[0] on frame 0 to scale[1] on the last."""
    return torch.linspace(scale[0], scale[1], frames, dtype=torch.float64)


@torch.no_grad()
def euler_sample(
    denoise: Denoiser,
    shape: tuple[int, ...],  # (B, F, C, H, W)
    steps: int,
    guidance: tuple[float, float] = (1.0, 2.5),
    generator: torch.Generator | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 700.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    w = frame_guidance(shape[1], guidance).reshape(1, -1, 1, 1, 1)  # (1, F, 1, 1, 1)
    # Drawn in float32 as diffusers draws it, so a seed gives the pipeline's video; stepped in float64.
    x = torch.randn(shape, generator=generator, dtype=torch.float32).double() * sigmas[0]
    for s, s_next in itertools.pairwise(sigmas):
        sigma = torch.full((shape[0],), float(s), dtype=dtype)
        d_cond = denoise(x.to(dtype), sigma, True).double()
        guided = d_cond
        if guidance != (1.0, 1.0):
            d_uncond = denoise(x.to(dtype), sigma, False).double()
            guided = d_uncond + w * (d_cond - d_uncond)
        x = x + (s_next - s) * (x - guided) / s  # Euler step along dx/dsigma = (x - D) / sigma
    return x.to(dtype)
