"""EDM (Karras et al. 2022) with sigma_data = 1, the parameterisation SVD trains with.

Four separate pieces, as in NVlabs/edm: the preconditioner wraps a backbone into D(x, sigma), the
sigma sampler draws training noise levels, the loss only ever sees D, and the sampler (sampler.py)
only ever sees D too. With sigma_data = 1 the preconditioning is equivalent to v-prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# F(x_in, c_noise, cond) -> raw backbone output; the backbone sees only scaled inputs.
Backbone = Callable[..., Tensor]


def append_dims(x: Tensor, ndim: int) -> Tensor:
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


class EDMPrecond(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise), sigma_data = 1 (paper App. D)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor, sigma: Tensor, concat: Tensor | None = None, **cond) -> Tensor:
        s = append_dims(sigma.to(x.dtype), x.ndim)
        c_skip = 1 / (s**2 + 1)
        c_out = -s / (s**2 + 1).sqrt()
        c_in = 1 / (s**2 + 1).sqrt()
        c_noise = 0.25 * sigma.log()
        x_in = c_in * x
        if concat is not None:  # image-to-video: the conditioning latent is concatenated unscaled
            x_in = torch.cat([x_in, concat], dim=-3)
        return c_skip * x + c_out * self.backbone(x_in, c_noise, **cond)


def sample_sigmas(n: int, p_mean: float, p_std: float, generator: torch.Generator | None = None) -> Tensor:
    """ln sigma ~ N(p_mean, p_std^2): the training noise distribution, one sigma per sample."""
    return (p_mean + p_std * torch.randn(n, generator=generator)).exp()


def loss_weight(sigma: Tensor) -> Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 with sigma_data = 1."""
    return (1 + sigma**2) / sigma**2


def edm_loss(
    denoiser: Callable[..., Tensor], x0: Tensor, sigma: Tensor, noise: Tensor | None = None, **cond
) -> Tensor:
    """Per-sample weighted MSE of the denoised latent; the caller reduces (mean for training)."""
    noise = torch.randn_like(x0) if noise is None else noise
    s = append_dims(sigma, x0.ndim)
    denoised = denoiser(x0 + s * noise, sigma, **cond)
    per_elem = append_dims(loss_weight(sigma), x0.ndim) * (denoised - x0) ** 2
    return per_elem.flatten(1).mean(1)
