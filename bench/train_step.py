"""Cost of one Stage II training step against a bare UNet forward/backward on the same shapes.

The ratio is the loop's overhead: VAE encoding, CLIP embedding and conditioning built per step.
A latent cache (a later step on the roadmap) removes most of it; this shows how much is at stake.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from svd.data.clips import Batch
from svd.diffusion.edm import edm_loss, sample_sigmas
from svd.model import components
from svd.model.denoiser import denoiser, prepare
from svd.model.inflate import inflate
from svd.params import load


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main(repeats: int = 5) -> dict[str, float]:
    torch.manual_seed(0)
    p = load("params.yaml")
    st = p.train.video
    c = components.build(p.model.arch, st.resolution[0])
    c.unet = inflate(c.unet, p.model.arch.unet.addition_time_embed_dim, st.frames)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (st.batch_size, st.frames, 3, *st.resolution), dtype=np.uint8)
    batch = Batch(
        torch.from_numpy(pixels).float() / 127.5 - 1,
        torch.full((st.batch_size,), float(st.fps)),
        torch.linspace(0, 8, st.batch_size),
    )
    d, g = denoiser(c), torch.Generator().manual_seed(0)

    def full_step() -> None:
        x0, cond = prepare(c, batch, p.conditioning, st.cond_drop, g)
        edm_loss(d, x0, sample_sigmas(st.batch_size, st.p_mean, st.p_std, g), **cond).mean().backward()

    x0, cond = prepare(c, batch, p.conditioning, 0.0, g)

    def bare_step() -> None:
        x_in = torch.cat([x0, cond["concat"]], dim=2)
        c.unet(
            x_in, torch.zeros(st.batch_size), cond["encoder_hidden_states"], cond["added_time_ids"]
        ).sample.mean().backward()

    bare, full = timed(bare_step, repeats), timed(full_step, repeats)
    return {"bare_unet_s": bare, "training_step_s": full, "ratio": full / bare}
