"""Turn a Components bundle and a batch of clips into what the EDM loss and sampler consume:
clean latents x0, the conditioning kwargs, and the preconditioned denoiser D(x, sigma, **cond)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from svd.diffusion.edm import EDMPrecond, edm_loss, sample_sigmas
from svd.model.components import Components
from svd.model.conditioning import (
    drop_text,
    encode,
    image_condition,
    latent_shape,
    sample,
    text_embed,
    text_video_condition,
    video_condition,
)
from svd.params import Condition, ConditioningParams

if TYPE_CHECKING:  # the data loader (and its video decoder) is not needed to denoise latents
    from svd.data.clips import Batch

EVAL_COND_AUG = 0.02  # the public sampler's default noise on the conditioning frame


class UNetBackbone(nn.Module):
    """F(x_in, c_noise, **cond): both diffusers UNets take (sample, timestep, encoder_hidden_states, ...)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, c_noise: Tensor, **cond: Tensor) -> Tensor:
        return self.unet(x, c_noise, return_dict=False, **cond)[0]


def denoiser(c: Components) -> EDMPrecond:
    return EDMPrecond(UNetBackbone(c.unet))


@torch.no_grad()
def prepare(
    c: Components,
    batch: Batch,
    cp: ConditioningParams,
    drop: float,
    generator: torch.Generator,
    part: slice = slice(None),
    size: int | None = None,
    cond_aug: Tensor | None = None,
    condition: Condition = "image",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Encode the clips of `batch` (or sample their stored posterior, svd.data.latents), which is
    `part` of a global batch of `size` (default: all of it), and build their `condition`ing (the
    first frame, or the caption); `drop` drops that share of samples' conditioning. Random numbers
    are drawn for the global batch, always in the same order, so ranks that split a batch
    (svd.train.distributed) draw what one process would."""
    stored = batch.posterior
    b = size or batch.frames.shape[0]
    f = batch.frames.shape[1] if stored is None else stored.shape[1]
    dev = batch.frames.device  # random numbers come from the CPU generator, on any device
    eps = torch.randn(latent_shape(c.vae, (b * f, *batch.frames.shape[2:])), generator=generator)
    keep = (torch.rand(b, generator=generator) >= drop)[part].to(dev) if drop > 0 else None
    eps = eps.unflatten(0, (b, f))[part].flatten(0, 1).to(dev)
    if stored is None:
        x0 = encode(c.vae, batch.frames.flatten(0, 1), eps)
    else:
        x0 = sample(c.vae, stored.flatten(0, 1), eps)
    x0 = x0.unflatten(0, (-1, f))  # (B, F, C, h, w)
    if condition == "text":
        text = text_embed(c, batch.captions) if batch.text is None else batch.text
        text = drop_text(c, text, keep)
        if not c.is_video:
            return x0[:, 0], dict(encoder_hidden_states=text)
        return x0, text_video_condition(text, batch.fps, motion_bucket(c, batch))
    first = batch.frames[:, 0]
    if not c.is_video:
        return x0[:, 0], image_condition(c, first, keep, batch.embeds)  # (B, 1, C, h, w) -> (B, C, h, w)
    if cond_aug is None:
        cond_aug = sample_sigmas(b, cp.cond_aug_p_mean, cp.cond_aug_p_std, generator)
    noise = torch.randn((b, *first.shape[1:]), generator=generator)[part].to(dev)
    return x0, video_condition(
        c, first, f, batch.fps, motion_bucket(c, batch), cond_aug[part].to(dev), noise, keep, batch.embeds
    )


def motion_bucket(c: Components, batch: Batch) -> Tensor:
    if c.motion is None:
        raise ValueError(
            "a video model needs its motion-bucket map (svd.model.motion) to condition on motion"
        )
    return c.motion.bucket(batch.motion)


@torch.no_grad()
def validation_loss(
    c: Components,
    batch: Batch,
    cp: ConditioningParams,
    sigmas: tuple[float, ...],
    seed: int = 0,
    condition: Condition = "image",
) -> dict[float, float]:
    """EDM loss at fixed sigmas with fixed noise: comparable across checkpoints of one stage."""
    g = torch.Generator().manual_seed(seed)
    dev = next(c.unet.parameters()).device
    batch = batch.to(dev)
    b = batch.frames.shape[0]
    x0, cond = prepare(c, batch, cp, 0.0, g, cond_aug=torch.full((b,), EVAL_COND_AUG), condition=condition)
    d = denoiser(c).eval()
    out = {}
    for s in sigmas:
        noise = torch.randn(x0.shape, generator=g).to(dev)
        out[s] = float(edm_loss(d, x0, torch.full((b,), s, device=dev), noise, **cond).mean())
    return out
