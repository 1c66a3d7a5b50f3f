"""Text conditioning: SD 2.1 folders load with their text encoder and tokenizer, captions reach the
UNet's cross-attention, a dropped caption is the empty one, and a text-to-video model samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

from svd.data.clips import Batch
from svd.generate import text_to_video
from svd.model import components
from svd.model.conditioning import text_embed
from svd.model.denoiser import prepare
from svd.model.inflate import add_frame_condition, inflate
from svd.model.motion import MotionBuckets
from svd.params import Architecture, ConditioningParams


def sd21_folder(path: Path) -> Path:
    """A tiny folder laid out as stabilityai/stable-diffusion-2-1: StableDiffusionPipeline's UNet2D,
    2D AutoencoderKL, CLIP text encoder and tokenizer, and no image encoder."""
    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=32,
    )
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=DDIMScheduler(prediction_type="v_prediction", steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(path)
    return path


def test_an_sd21_folder_loads_with_its_text_encoder(tmp_path: Path) -> None:
    c = components.load(sd21_folder(tmp_path / "sd21"))
    assert isinstance(c.vae, AutoencoderKL) and not c.is_video
    assert c.image_encoder is None and c.text_encoder is not None and c.tokenizer is not None
    assert c.tokenizer.model_max_length == 77
    e = text_embed(c, ["a red circle drifting slowly", ""])
    assert e.shape == (2, 77, c.unet.config.cross_attention_dim)
    # what diffusers' own pipeline would condition on
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "sd21")
    theirs, _ = pipe.encode_prompt("a red circle drifting slowly", "cpu", 1, False)
    torch.testing.assert_close(e[:1], theirs)


def test_a_saved_text_model_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    c.image_encoder = None  # as a stage started from SD 2.1
    components.save(c, tmp_path / "image")
    loaded = components.load(tmp_path / "image")
    assert loaded.image_encoder is None and loaded.tokenizer is not None
    caption = ["two blue squares moving fast, with large text 'SALE'"]
    torch.testing.assert_close(text_embed(loaded, caption), text_embed(c, caption))


def tiny_text_video() -> components.Components:
    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    c.unet = inflate(c.unet, 32, 4, concat=False)
    c.motion = MotionBuckets.from_scores(torch.linspace(0, 5, 50).numpy())
    return c


def test_captions_condition_the_unet_and_a_dropped_caption_is_the_empty_one() -> None:
    c = tiny_text_video()
    captions = [f"a red circle number {i}" for i in range(400)]
    batch = Batch(
        frames=torch.zeros(400, 4, 3, 32, 32),
        fps=torch.full((400,), 6.0),
        motion=torch.ones(400),
        captions=captions,
    )
    _, cond = prepare(
        c, batch, ConditioningParams(), 0.15, torch.Generator().manual_seed(0), condition="text"
    )
    got = cond["encoder_hidden_states"]
    with torch.no_grad():
        want, empty = text_embed(c, captions), text_embed(c, [""])
    dropped = (got - empty).flatten(1).abs().amax(1) < 1e-5
    kept = (got - want).flatten(1).abs().amax(1) < 1e-5
    assert bool((dropped ^ kept).all())  # each sample is its caption or the empty caption
    assert 0.11 < float(dropped.float().mean()) < 0.19  # 15% of 400, within 3 standard deviations
    assert "concat" not in cond and cond["added_time_ids"][:, 2].eq(0).all()  # no conditioning frame


def test_a_text_to_video_model_samples_its_caption() -> None:
    c = tiny_text_video()
    kw = dict(frames=4, fps=6, motion_bucket=127, steps=3, seed=1)
    a = text_to_video(c, "a red circle drifting slowly", **kw)  # type: ignore[arg-type]
    assert a.shape == (4, 32, 32, 3)
    assert (text_to_video(c, "a red circle drifting slowly", **kw) == a).all()  # type: ignore[arg-type]
    assert (text_to_video(c, "three green triangles moving fast", **kw) != a).any()  # type: ignore[arg-type]


def test_text_to_video_becomes_image_to_video_as_it_was() -> None:
    """The finetune to image-to-video widens the input with zero weights: with the same context, the
    widened UNet computes what the text-to-video one did, whatever frame is concatenated."""
    c = tiny_text_video()
    wide = add_frame_condition(c.unet)
    assert wide.config.in_channels == 2 * c.unet.config.in_channels
    x, context = torch.randn(1, 4, 4, 16, 16), torch.randn(1, 1, 32)
    ids = torch.tensor([[5.0, 127.0, 0.02]])
    with torch.no_grad():
        narrow = c.unet(x, torch.tensor([0.3]), context, ids).sample
        widened = wide(torch.cat([x, torch.randn_like(x)], 2), torch.tensor([0.3]), context, ids).sample
    torch.testing.assert_close(widened, narrow)


def test_an_svd_folder_cannot_start_a_text_stage(tiny_params, tmp_path: Path) -> None:
    from svd.train.loop import initial_components

    torch.manual_seed(0)
    released = components.build(tiny_params.model.arch, 32)
    released.unet = inflate(released.unet, 32, 4)
    released.text_encoder = released.tokenizer = None  # SVD ships no text encoder
    components.save(released, tmp_path / "svd")
    st = tiny_params.train.video.model_copy(update={"init": tmp_path / "svd", "condition": "text"})
    with pytest.raises(ValueError, match="no text encoder"):
        initial_components(tiny_params, st)


def test_the_served_model_answers_a_prompt_or_an_image_as_it_was_trained(tmp_path) -> None:
    """The registered pyfunc of a text-to-video Stage III makes a video from a prompt and refuses an
    image; an image-to-video one makes a video from an image and refuses a prompt."""
    import base64
    import io

    import pandas as pd
    from PIL import Image

    from svd.media.io import read_frames
    from svd.registry import SVDPipelineModel

    torch.manual_seed(0)
    text = components.build(Architecture(), 32)
    text.unet = inflate(text.unet, 32, 4, concat=False)
    image = components.build(Architecture(), 32)
    image.unet = inflate(image.unet, 32, 4)
    png = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(png, format="PNG")
    ask = {"frames": 4, "steps": 2, "seed": 0}
    for c, good, bad in (
        (text, {"prompt": "a red ball rolls"}, {"image": base64.b64encode(png.getvalue()).decode()}),
        (image, {"image": base64.b64encode(png.getvalue()).decode()}, {"prompt": "a red ball rolls"}),
    ):
        served = SVDPipelineModel()
        served.components = c
        out = served.predict(None, pd.DataFrame([good | ask]))
        assert read_frames(base64.b64decode(out["video"][0])).shape == (4, 32, 32, 3)
        for wrong in (bad, good | bad):  # the other input alone, or beside the right one
            with pytest.raises(ValueError, match=f"needs '{next(iter(good))}'"):
                served.predict(None, pd.DataFrame([wrong | ask]))
