"""What the denoiser is conditioned on, in the paper's two modes.

Image-to-video, as SVD's released model expects it:
- cross-attention: the CLIP image embedding of the clean conditioning frame, (B, 1, D);
- concat: the conditioning frame plus noise of level cond_aug, encoded to the latent mean (unscaled,
  as diffusers' pipeline does), repeated over frames and concatenated channel-wise;
- micro-conditioning `added_time_ids` = [fps - 1, motion bucket, cond_aug]. The `fps - 1` is a
  quirk of the released SVD checkpoints that diffusers reproduces; we keep it so our checkpoints
  and diffusers' pipeline agree.
A dropped sample has both the embedding and the concat latent zeroed: that is the unconditional
branch classifier-free guidance uses at sampling time.

Text-to-image (Stage I) and text-to-video (the base video model): cross-attention on the caption's
CLIP text hidden states, (B, 77, D), as SD 2.1; video adds [fps - 1, motion bucket, 0], there being
no conditioning frame to noise. A dropped caption is the empty caption, SD 2.1's unconditional
branch (and diffusers' default negative prompt), not zeros.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    _resize_with_antialiasing,  # private, but the reference this must equal; diffusers is pinned
)
from torch import Tensor

from svd.model.components import VAE, Components, downscale

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def added_time_ids(fps: Tensor, bucket: Tensor, cond_aug: Tensor) -> Tensor:
    return torch.stack([fps - 1, bucket, cond_aug], dim=1).float()  # (B, 3)


def clip_embed(c: Components, image: Tensor) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 1, D) projected CLIP image embedding.

    Preprocessed exactly as diffusers' SVD pipeline does (a Gaussian blur sized to the downscale, then
    bicubic with aligned corners, in [-1, 1]), with its own function: torch's antialiased bicubic
    differs by up to 0.3 per pixel on a 576x1024 frame, and the released model was trained on this."""
    if c.image_encoder is None:
        raise ValueError("image conditioning needs a CLIP image encoder; the model has none")
    size = c.image_encoder.config.image_size
    x = _resize_with_antialiasing(image, (size, size))
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    x = ((x + 1) / 2 - mean) / std
    return c.image_encoder(pixel_values=x).image_embeds[:, None]


def text_embed(c: Components, captions: list[str]) -> Tensor:
    """Captions -> (B, L, D): the text encoder's last hidden states over the padded tokens, as
    diffusers' StableDiffusionPipeline conditions SD 2.1 (whose text encoder ends a layer early)."""
    if c.text_encoder is None or c.tokenizer is None:
        raise ValueError("text conditioning needs a text encoder and tokenizer; the model has none")
    ids = c.tokenizer(
        captions,
        padding="max_length",
        max_length=c.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return c.text_encoder(ids.to(c.text_encoder.device)).last_hidden_state


def drop_text(c: Components, embeds: Tensor, keep: Tensor | None) -> Tensor:
    """The empty caption's embedding where `keep` is False."""
    if keep is None or bool(keep.all()):
        return embeds
    return torch.where(keep.view(-1, 1, 1), embeds, text_embed(c, [""]).to(embeds.dtype))


def latent_shape(vae: VAE, pixels: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C, h, w) of the latents of (N, 3, H, W) pixels."""
    k = downscale(vae.config.block_out_channels)
    return (pixels[0], vae.config.latent_channels, pixels[-2] // k, pixels[-1] // k)


def posterior(vae: VAE, pixels: Tensor) -> Tensor:
    """(N, 3, H, W) -> the encoder's Gaussian, (N, 2, C, h, w): mean and std, unscaled. What the
    latent store keeps: a stage samples from it afresh each step, as if it had encoded the frames."""
    d = vae.encode(pixels).latent_dist
    return torch.stack([d.mean, d.std], dim=1)


def sample(vae: VAE, gaussian: Tensor, noise: Tensor) -> Tensor:
    """Scaled latents (N, C, h, w) from a posterior (N, 2, C, h, w) and standard-normal `noise`:
    drawn by the caller, so ranks that split a batch draw what one process would (diffusers'
    sample() draws the same numbers from a generator)."""
    return (gaussian[:, 0] + gaussian[:, 1] * noise) * vae.config.scaling_factor


def encode(vae: VAE, pixels: Tensor, noise: Tensor) -> Tensor:
    """(N, 3, H, W) -> scaled latents (N, C, h, w), sampled from the posterior with `noise`."""
    return sample(vae, posterior(vae, pixels), noise)


def decode(vae: VAE, latents: Tensor) -> Tensor:
    """(B, F, C, h, w) scaled latents -> (B, F, 3, H, W) pixels in [-1, 1]."""
    b, f = latents.shape[:2]
    z = latents.flatten(0, 1) / vae.config.scaling_factor  # (B, F, C, h, w) -> (B*F, C, h, w)
    kwargs = {"num_frames": f} if isinstance(vae, AutoencoderKLTemporalDecoder) else {}
    x = vae.decode(z, **kwargs).sample
    return x.unflatten(0, (b, f)).clamp(-1, 1)


def video_condition(
    c: Components,
    first: Tensor,  # (B, 3, H, W) conditioning frame in [-1, 1]
    frames: int,
    fps: Tensor,  # (B,)
    bucket: Tensor,  # (B,)
    cond_aug: Tensor,  # (B,)
    noise: Tensor,  # (B, 3, H, W) standard normal: the noise augmentation at level cond_aug
    keep: Tensor | None = None,  # (B,) bool; False zeroes the conditioning of that sample
    embeds: Tensor | None = None,  # (B, 1, D) clip_embed(c, first), when a latent store holds it
) -> dict[str, Tensor]:
    noisy = first + cond_aug.view(-1, 1, 1, 1) * noise
    latent = c.vae.encode(noisy).latent_dist.mode()  # unscaled, as in diffusers' SVD pipeline
    embeds = clip_embed(c, first) if embeds is None else embeds
    if keep is not None:
        latent = latent * keep.view(-1, 1, 1, 1)
        embeds = embeds * keep.view(-1, 1, 1)
    return dict(
        concat=latent[:, None].expand(-1, frames, -1, -1, -1),  # (B, C, h, w) -> (B, F, C, h, w)
        encoder_hidden_states=embeds,
        added_time_ids=added_time_ids(fps, bucket, cond_aug),
    )


def text_video_condition(
    embeds: Tensor,  # (B, L, D) text_embed of the captions, dropped ones already the empty caption's
    fps: Tensor,  # (B,)
    bucket: Tensor,  # (B,)
) -> dict[str, Tensor]:
    return dict(
        encoder_hidden_states=embeds, added_time_ids=added_time_ids(fps, bucket, torch.zeros_like(fps))
    )


def image_condition(
    c: Components, image: Tensor, keep: Tensor | None = None, embeds: Tensor | None = None
) -> dict[str, Tensor]:
    """Stage I in image mode is an image-variation model: it is conditioned on the CLIP embedding of
    its target, the same embedding the video model later gets from its first frame."""
    embeds = clip_embed(c, image) if embeds is None else embeds
    if keep is not None:
        embeds = embeds * keep.view(-1, 1, 1)
    return dict(encoder_hidden_states=embeds)
