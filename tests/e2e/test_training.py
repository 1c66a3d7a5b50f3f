"""One loop, three stages: on a fixed seed each stage's validation loss (fixed sigmas, fixed noise,
held-out clips) falls, and each writes a checkpoint the next stage starts from. End to end: it trains
all three stages on the smoke profile (about a minute), so it lives here rather than in tests/unit."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from svd.data.clips import load_subset
from svd.model import components
from svd.train.loop import train_stage


def test_three_stages_learn_and_chain(tiny_params):
    p = tiny_params
    results = {}
    for stage in ("image", "video", "finetune"):
        r = train_stage(p, stage, p.filter.out, p.curate.out)
        results[stage] = r
        assert r.val_loss_after < r.val_loss_before, r
        assert json.loads((Path(r.out) / "training.json").read_text())["result"]["stage"] == stage
    assert results["image"].autoencoder_loss is not None and results["image"].scaling_factor != 1.0
    image = components.load(p.train.image.out)
    assert not image.is_video
    # SVD's decoder is temporal: decoding 8 frames at once must be as good as one at a time
    x = load_subset(p.filter.out, p.curate.out, "lvd", "val", 6, 8, (32, 32)).fixed(2).frames.flatten(0, 1)
    with torch.no_grad():
        z = image.vae.encode(x).latent_dist.mode()
        err = {n: float(((image.vae.decode(z, num_frames=n).sample - x) ** 2).mean()) for n in (1, 8)}
    assert err[8] < 1.25 * err[1], err
    video = components.load(p.train.video.out)
    assert video.is_video and video.unet.config.in_channels == 2 * video.vae.config.latent_channels
    finetune = components.load(p.train.finetune.out)
    assert finetune.unet.config.sample_size == p.train.finetune.resolution[0] // 2  # higher resolution
