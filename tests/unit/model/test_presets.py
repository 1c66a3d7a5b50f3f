"""The presets of params.yaml are the architectures they name: `svd` is, key for key and shape for
shape, the model Stability AI released, so its weights load into the same function, not merely into
tensors of the same size. Everything is built on the meta device: no weights are allocated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from svd import params
from svd.cli import main
from svd.model import components
from svd.model.inflate import inflate
from svd.params import Architecture, ParamsError

ROOT = Path(__file__).resolve().parents[3]

# The published configs of stabilityai/stable-video-diffusion-img2vid (unet/, vae/, image_encoder/).
SVD_UNET = dict(
    sample_size=96,
    in_channels=8,
    out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768,
    layers_per_block=2,
    cross_attention_dim=1024,
    transformer_layers_per_block=1,
    num_attention_heads=(5, 10, 20, 20),
    num_frames=14,
)
SVD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
)
SVD_IMAGE_ENCODER = dict(
    hidden_size=1280,
    intermediate_size=5120,
    projection_dim=1024,
    num_hidden_layers=32,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="gelu",
)


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def heads(module: torch.nn.Module) -> dict[str, int]:
    return {name: m.heads for name, m in module.named_modules() if isinstance(m, Attention)}


@pytest.fixture(scope="module")
def presets() -> dict[str, Architecture]:
    return params.load(ROOT / "params.yaml").model.presets


def test_svd_preset_is_the_released_architecture(presets: dict[str, Architecture]) -> None:
    a = presets["svd"]
    with torch.device("meta"):
        ours = components.build(a, 576)
        video = inflate(ours.unet, a.unet.addition_time_embed_dim, 14)  # Stage I's UNet, inflated
        unet = UNetSpatioTemporalConditionModel(**SVD_UNET)
        vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**SVD_IMAGE_ENCODER))
    assert shapes(video) == shapes(unet)
    assert heads(video) == heads(unet) and set(heads(unet).values()) == {5, 10, 20}
    assert components.count_parameters(video) == 1_524_623_082
    assert shapes(ours.vae) == shapes(vae)
    assert shapes(ours.image_encoder) == shapes(encoder)
    assert ours.image_encoder.config.hidden_act == "gelu"
    assert components.count_parameters(ours.unet) == 865_910_724  # SD 2.1's UNet, Stage I's start


@pytest.mark.parametrize("name", ["tiny", "small", "svd"])
def test_every_preset_builds_and_inflates(presets: dict[str, Architecture], name: str) -> None:
    a = presets[name]
    with torch.device("meta"):
        c = components.build(a, 64)
        video = inflate(c.unet, a.unet.addition_time_embed_dim, 14)
    assert tuple(video.config.num_attention_heads) == a.unet.num_attention_heads
    assert c.image_encoder.config.projection_dim == a.unet.cross_attention_dim


def test_model_command_prints_the_parameter_count(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--params", str(ROOT / "params.yaml"), "model", "--preset", "svd"])
    out = capsys.readouterr().out
    assert "1,524,623,082 parameters" in out and "     0       320      5        64" in out


def test_architecture_mistakes_fail_at_load_time() -> None:
    def load(unet: dict, encoder: dict | None = None) -> None:
        arch = {"unet": unet, **({"image_encoder": encoder} if encoder else {})}
        params.load(ROOT / "params.yaml", {"model": {"presets": {"bad": arch}, "preset": "bad"}})

    with pytest.raises(ParamsError, match="one entry per block"):
        load({"block_out_channels": [32, 64], "num_attention_heads": [4]})
    with pytest.raises(ParamsError, match="do not split into 5 attention heads"):
        load({"block_out_channels": [32, 64], "num_attention_heads": [4, 5]})
    with pytest.raises(ParamsError, match="cross-attention context"):
        load({"cross_attention_dim": 64}, {"projection_dim": 32})
    with pytest.raises(ParamsError, match=r"none of model\.presets"):
        params.load(ROOT / "params.yaml", {"model": {"preset": "huge"}})
