"""The latent store: filled once, keyed by content and encoder weights, and a step on it sees what a
step encoding the pixels sees."""

from __future__ import annotations

import pytest
import torch

from svd.data.clips import draws, load_subset
from svd.data.latents import LatentWindows, encoders_hash, fill, folder, text_hash
from svd.model import components
from svd.model.conditioning import posterior, text_embed
from svd.model.denoiser import prepare
from svd.model.inflate import inflate
from svd.model.motion import MotionBuckets


@pytest.fixture(scope="module")
def setup(tiny_params, tmp_path_factory):
    p = tiny_params
    torch.manual_seed(0)
    c = components.build(p.model.arch, 32)
    c.unet = inflate(c.unet, p.model.arch.unet.addition_time_embed_dim, 4)
    c.vae.register_to_config(scaling_factor=0.7)  # sampling must apply it to stored latents too
    windows = load_subset(p.filter.out, p.curate.out, "lvd", "train", 6, 4, (32, 32))
    c.motion = MotionBuckets.from_scores(windows.motion)
    root = str(tmp_path_factory.mktemp("latents"))
    return p, c, windows, root, fill(windows, c, root, text=True)


def test_fill_computes_each_clip_and_caption_once(setup) -> None:
    _, c, windows, root, first = setup
    entries = len(windows) + len(windows.all_captions())
    assert len(windows.all_captions()) > 3 and first == (entries, 0)
    assert fill(windows, c, root, text=True) == (0, entries)  # a second run, or a resumed one, reuses all


def test_entries_are_keyed_by_the_encoder_weights(setup) -> None:
    c = setup[1]
    before = encoders_hash(c)
    with torch.no_grad():
        c.vae.decoder.conv_out.bias += 1  # the decoder makes no entry: same key
        assert encoders_hash(c) == before
        c.vae.encoder.conv_in.bias += 1e-3  # a retrained encoder: new entries
        assert encoders_hash(c) != before
        c.vae.encoder.conv_in.bias -= 1e-3
        c.vae.decoder.conv_out.bias -= 1
    assert encoders_hash(c) == before
    assert folder("s3://b/l", before, (32, 32), 6).startswith(f"s3://b/l/v1-{before[:16]}/32x32@6")


def test_a_stored_window_is_the_encoded_window(setup) -> None:
    _, c, windows, root, _ = setup
    stored = LatentWindows(windows, root, encoders_hash(c))
    for i, at in ((0, 0.0), (len(windows) - 1, 0.7)):
        pixels = windows.window(i, at)
        item = stored[(i, at, 0.0)]
        assert (item.first == pixels[0]).all()
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            torch.testing.assert_close(
                torch.from_numpy(item.posterior), posterior(c.vae, x), rtol=1e-5, atol=1e-6
            )
        assert item.embeds is not None and item.embeds.shape == (c.image_encoder.config.projection_dim,)
        assert item.text is None  # an image-conditioned stage reads no caption embedding


def test_a_stored_caption_is_the_encoded_caption(setup) -> None:
    _, c, windows, root, _ = setup
    stored = LatentWindows(windows, root, encoders_hash(c), text_hash(c))
    item = stored[(1, 0.0, 0.0)]
    assert item.caption == windows.caption(1, 0.0) != ""
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(item.text), text_embed(c, [item.caption])[0], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("condition", ["image", "text"])
def test_a_step_on_the_store_draws_what_encoding_draws(setup, condition) -> None:
    """Same draws and the same generator: the clean latents and every conditioning input agree."""
    p, c, windows, root, _ = setup
    if condition == "text":
        video = inflate(components.build(p.model.arch, 32).unet, 32, 4, concat=False)  # text-to-video
        c = components.Components(**{**c.__dict__, "unet": video})
    stored = LatentWindows(windows, root, encoders_hash(c), text_hash(c) if condition == "text" else None)
    plan = draws(0, "video/denoiser", 3, 4, len(windows))
    pixels = windows.collate([windows[d] for d in plan])
    latents = stored.collate([stored[d] for d in plan])
    # an image-to-video step decodes its conditioning frame; a text-to-video step nothing
    assert latents.frames.shape[1] == (1 if condition == "image" else 0) and latents.posterior is not None
    assert (latents.text is not None) == (condition == "text")
    out = [
        prepare(c, b, p.conditioning, 0.5, torch.Generator().manual_seed(1), condition=condition)
        for b in (pixels, latents)
    ]
    (x_pix, cond_pix), (x_lat, cond_lat) = out
    torch.testing.assert_close(x_lat, x_pix, rtol=1e-5, atol=1e-5)
    assert cond_lat.keys() == cond_pix.keys()
    for k in cond_pix:
        torch.testing.assert_close(cond_lat[k], cond_pix[k], rtol=1e-5, atol=1e-5)


def test_a_missing_entry_names_the_clip_and_the_fix(setup, tmp_path) -> None:
    _, c, windows, _, _ = setup
    empty = LatentWindows(windows, str(tmp_path), encoders_hash(c))
    with pytest.raises(FileNotFoundError, match=f"clip {windows.keys[0]}.*svd latents"):
        empty[(0, 0.0, 0.0)]
