"""The speed levers of params.yaml's train.compute, applied to a stage's networks.

Random numbers stay on the CPU generator whatever the device (they are drawn there and moved), so
a seed draws the same noise on a laptop and on a GPU, and a run resumes on either. Only the UNet's
layers are compiled: the frozen encoders run once per batch under no_grad, where compiling buys little.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from torch import nn
from torch.utils.checkpoint import checkpoint

from svd.model.components import Components, UNet
from svd.params import ComputeParams


def device(cp: ComputeParams) -> torch.device:
    if cp.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.compute.device is cuda, but torch sees no CUDA GPU on this machine")
    if cp.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores, as edm trains
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(cp.device)


def prepare_networks(c: Components, cp: ComputeParams) -> torch.device:
    """Move the networks to the device and set attention, checkpointing and memory format."""
    dev = device(cp)
    for net in (c.vae, c.unet, c.image_encoder, c.text_encoder):
        if net is not None:
            net.to(dev)
    for net in (c.vae, c.unet):
        net.set_attn_processor(AttnProcessor2_0() if cp.attention == "sdpa" else AttnProcessor())
        if cp.channels_last:  # the 2D convolutions' weights; other tensors have no 4D layout to change
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
    speed_up_layers(c.unet, cp)
    if cp.gradient_checkpointing:
        c.vae.enable_gradient_checkpointing()
    return dev


def blocks(unet: UNet) -> list[Any]:  # diffusers types them loosely
    """The UNet's down, mid and up blocks, in order: what FSDP shards one by one."""
    return [*unet.down_blocks, unet.mid_block, *unet.up_blocks]


def layers(unet: UNet, kind: Literal["all", "resnets", "attention"] = "all") -> list[nn.Module]:
    """The UNet's resnet and attention layers, or one kind of them: nearly all of its work."""
    resnets = [r for b in blocks(unet) for r in b.resnets]
    attention = [a for b in blocks(unet) for a in getattr(b, "attentions", ())]
    return {"all": resnets + attention, "resnets": resnets, "attention": attention}[kind]


def speed_up_layers(unet: UNet, cp: ComputeParams) -> None:
    """Compile each layer on its own and recompute each of `cp.checkpoint_layers` in backward,
    keeping only its inputs.

    Per layer, not whole: compiling the `svd` denoiser as one graph ran out of memory at 8 clips and
    had not finished after 265 s at 4 on an H100. The resnets share one forward and the attention
    layers another; once a second size reaches one, dynamo compiles it to a graph that takes any
    size, so a few graphs serve every layer, and validation's and sampling's batches (under no_grad:
    graphs of their own, compiled at first use). The fused elementwise work (SiLU, residual adds,
    layout copies) fell from 45% of a step's GPU time to 14%; at 8 clips a step ran 1.36x faster
    (MFU 14.2% to 19.3%) after a first step that compiled for 349 s. diffusers' own checkpointing
    skips the temporal half of each spatio-temporal layer, whose activations then stay resident:
    82 GiB for 4 clips of 14 x 320x576 on an H200, where recomputing whole layers fits 8 in 48 GiB
    on an H100 (bench/gpu-notes.md). Module names, hence state dicts, are unchanged."""
    every = layers(unet)
    if cp.compile:  # room for every layer's graphs in both grad modes, should sizes stay static
        limit = max(torch._dynamo.config.recompile_limit, 2 * len(every))
        torch._dynamo.config.recompile_limit = limit
    recompute = {id(x) for x in layers(unet, cp.checkpoint_layers)} if cp.gradient_checkpointing else set()
    for layer in every:
        forward = torch.compile(layer.forward) if cp.compile else layer.forward
        layer.forward = recomputed(forward) if id(layer) in recompute else forward


def recomputed(forward: Callable[..., Any]) -> Callable[..., Any]:
    """`forward` run under activation checkpointing while autograd records (sampling runs it plain)."""

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def optimizer(params: list[nn.Parameter], lr: float) -> torch.optim.AdamW:
    """AdamW without weight decay, as the paper; on a GPU one fused kernel updates every tensor."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=params[0].is_cuda)


@contextlib.contextmanager
def autocast(cp: ComputeParams, dev: torch.device) -> Iterator[None]:
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cp.precision == "bf16"):
        yield
