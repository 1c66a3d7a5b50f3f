"""Image UNet -> video UNet (paper Sec. 4, VideoLDM-style inflation), and text-to-video UNet ->
image-to-video UNet (the paper's image-to-video finetune of its text-to-video base model).

diffusers' UNetSpatioTemporalConditionModel wraps every spatial ResBlock as `spatial_res_block`
inside a SpatioTemporalResBlock and keeps the spatial transformer's names, so the spatial weights
map one to one after dropping that infix. Temporal layers stay freshly initialised; their mixing
parameter starts at 0.5, so the spatial path's weight is alpha = sigmoid(0.5) = 0.62 on video, and 1
(temporal path bypassed) on image-only batches.

Bypassed, the video UNet is the image UNet frame by frame except for GroupNorm eps: diffusers
builds the spatio-temporal resnets with 1e-6 in cross-attention blocks, where the image UNet (and
SD 2.1) has 1e-5. That is a change of about 5e-5 on the tiny UNet, kept so that diffusers' own
pipeline runs a saved model exactly as this code does.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

UP = {"UpBlock2D": "UpBlockSpatioTemporal", "CrossAttnUpBlock2D": "CrossAttnUpBlockSpatioTemporal"}
DOWN = {"DownBlock2D": "DownBlockSpatioTemporal", "CrossAttnDownBlock2D": "CrossAttnDownBlockSpatioTemporal"}


def video_unet_config(
    image: UNet2DConditionModel, addition_time_embed_dim: int, frames: int, concat: bool = True
) -> dict:
    c = image.config
    heads = c.attention_head_dim  # diffusers' legacy name: for these blocks it is the head count
    if c.num_attention_heads is not None:
        heads = c.num_attention_heads
    return dict(
        sample_size=c.sample_size,
        in_channels=(2 if concat else 1) * c.in_channels,  # noisy latent (+ the conditioning frame's)
        out_channels=c.out_channels,
        down_block_types=tuple(DOWN[t] for t in c.down_block_types),
        up_block_types=tuple(UP[t] for t in c.up_block_types),
        block_out_channels=tuple(c.block_out_channels),
        layers_per_block=c.layers_per_block,
        cross_attention_dim=c.cross_attention_dim,
        num_attention_heads=heads,
        addition_time_embed_dim=addition_time_embed_dim,
        projection_class_embeddings_input_dim=3 * addition_time_embed_dim,  # fps, motion bucket, cond_aug
        num_frames=frames,
    )


def spatial_key(video_key: str) -> str:
    return video_key.replace(".spatial_res_block", "")


@torch.no_grad()
def inflate(
    image: UNet2DConditionModel, addition_time_embed_dim: int, frames: int, concat: bool = True
) -> UNetSpatioTemporalConditionModel:
    """Build the video UNet and copy every spatial weight; raise if any image weight is left over.
    `concat`: an image-to-video UNet, taking the conditioning frame's latent beside its input; else
    text-to-video."""
    config = video_unet_config(image, addition_time_embed_dim, frames, concat)
    video = UNetSpatioTemporalConditionModel(**config)
    src = image.state_dict()
    dst = video.state_dict()
    used = set()
    for key, value in dst.items():
        k = spatial_key(key)
        if k not in src:
            continue  # temporal layers and the micro-conditioning embedding: new
        if key == "conv_in.weight":  # (C_out, 2C, 3, 3): copy the latent half, zero the concat half
            widen(value, src[k])
        else:
            if value.shape != src[k].shape:
                raise ValueError(
                    f"inflate: {key} has shape {tuple(value.shape)}, image has {tuple(src[k].shape)}"
                )
            value.copy_(src[k])
        used.add(k)
    if missing := sorted(set(src) - used):
        raise ValueError(f"inflate: image weights with no place in the video UNet: {missing[:5]}")
    # A zero last layer makes the new micro-conditioning start as a no-op on the timestep embedding.
    video.add_embedding.linear_2.weight.zero_()
    video.add_embedding.linear_2.bias.zero_()
    video.load_state_dict(dst)
    return video


def widen(conv_in: torch.Tensor, narrow: torch.Tensor) -> None:
    """A conv_in taking the conditioning frame's latent beside its input: the input's weights, zero
    for the new channels, so the widened UNet starts as the narrow one."""
    conv_in.zero_()
    conv_in[:, : narrow.shape[1]] = narrow


@torch.no_grad()
def add_frame_condition(video: UNetSpatioTemporalConditionModel) -> UNetSpatioTemporalConditionModel:
    """Text-to-video -> image-to-video: the same UNet with the conditioning frame's latent
    concatenated to its input, every weight kept (its cross-attention then reads a CLIP image
    embedding instead of text, of the same width)."""
    wide = UNetSpatioTemporalConditionModel.from_config(
        video.config, in_channels=2 * video.config.in_channels
    )
    state = video.state_dict()
    conv_in = wide.conv_in.weight.clone()
    widen(conv_in, state["conv_in.weight"])
    wide.load_state_dict(state | {"conv_in.weight": conv_in})
    return wide
