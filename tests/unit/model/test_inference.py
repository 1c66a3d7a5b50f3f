"""Our sampler is diffusers' StableVideoDiffusionPipeline: the same saved weights and seed give the
same latents, so a model trained here behaves the same in either, and a released SVD checkpoint
behaves here as it does in diffusers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from svd.generate import sample_latents
from svd.model import components
from svd.model.conditioning import clip_embed
from svd.model.inflate import inflate
from svd.params import Architecture


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[components.Components, Path]:
    torch.manual_seed(0)
    a = Architecture()
    c = components.build(a, 32)
    c.unet = inflate(c.unet, a.unet.addition_time_embed_dim, 4)
    with torch.no_grad():  # temporal layers start as no-ops; give them weight so they are compared too
        for name, p in c.unet.named_parameters():
            if "temporal" in name or name.endswith("mix_factor"):
                p.normal_(0, 0.2)
    folder = tmp_path_factory.mktemp("pipeline") / "video"
    components.save(c, folder)
    return components.load(folder), folder


@pytest.mark.parametrize("height, width", [(32, 32), (32, 48)])
def test_same_seed_same_latents_as_the_diffusers_pipeline(
    saved: tuple[components.Components, Path], height: int, width: int
) -> None:
    """Square, and non-square as a stage trained at 320x576 samples."""
    c, folder = saved
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    kw = dict(frames=4, fps=7, motion_bucket=90, steps=4, guidance=(1.0, 3.0), seed=5, cond_aug=0.02)
    ours = sample_latents(c, image, **kw, size=(height, width))  # type: ignore[arg-type]
    pipe = StableVideoDiffusionPipeline.from_pretrained(folder)
    theirs = pipe(
        Image.fromarray(image),
        height=height,
        width=width,
        num_frames=4,
        num_inference_steps=4,
        min_guidance_scale=1.0,
        max_guidance_scale=3.0,
        fps=7,
        motion_bucket_id=90,
        noise_aug_strength=0.02,
        generator=torch.Generator().manual_seed(5),
        output_type="latent",
    ).frames
    assert ours.shape == theirs.shape == (1, 4, 4, height // 2, width // 2)
    assert ours.abs().mean() > 0.1  # a real sample, not zeros
    torch.testing.assert_close(ours, theirs.to(ours.dtype), atol=1e-4, rtol=0)
    other = sample_latents(c, image, **(kw | {"seed": 6}), size=(height, width))  # type: ignore[arg-type]
    assert (other - ours).abs().max() > 1e-2  # the seed matters: the match is not a coincidence


def test_clip_preprocessing_is_the_pipelines(saved: tuple[components.Components, Path]) -> None:
    """On a 576x1024 frame, where torch's own antialiasing differs from diffusers' by up to 0.3."""
    c, folder = saved
    pipe = StableVideoDiffusionPipeline.from_pretrained(folder)
    frame = np.random.default_rng(1).integers(0, 256, (576, 1024, 3), dtype=np.uint8)
    theirs = pipe._encode_image(Image.fromarray(frame), "cpu", 1, False)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        ours = clip_embed(c, x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
