"""Model construction: inflation keeps the image model, checkpoints are real diffusers folders."""

import torch
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel

from svd.model import components
from svd.model.inflate import inflate, spatial_key
from svd.params import Architecture


def tiny():
    torch.manual_seed(0)
    return components.build(Architecture(), 32)


def test_inflation_copies_every_spatial_weight_and_adds_temporal_layers():
    c = tiny()
    video = inflate(c.unet, addition_time_embed_dim=32, frames=8)
    image_sd, video_sd = c.unet.state_dict(), video.state_dict()
    for key, value in video_sd.items():
        src = image_sd.get(spatial_key(key))
        if src is not None and key != "conv_in.weight":
            assert torch.equal(value, src), key
    torch.testing.assert_close(video_sd["conv_in.weight"][:, :4], image_sd["conv_in.weight"])
    assert torch.count_nonzero(video_sd["conv_in.weight"][:, 4:]) == 0
    temporal = [k for k in video_sd if "temporal" in k]
    assert temporal and all(spatial_key(k) not in image_sd for k in temporal)


def test_inflated_model_with_temporal_path_bypassed_equals_the_image_model():
    """alpha = 1 is the paper's image-only mode: the video UNet must then be the image UNet, frame by
    frame. One difference is not a weight: diffusers builds the spatio-temporal resnets' GroupNorms
    with eps 1e-6 in cross-attention blocks (1e-5 elsewhere), where SD 2.1 has 1e-5 throughout. The
    saved model keeps diffusers' eps, so diffusers' pipeline runs it exactly (test_inference); the
    image UNet here takes the video's eps, and then every weight must be in its place to 1e-5."""
    c = tiny()
    video = inflate(c.unet, 32, 8)
    image_norms = dict(c.unet.named_modules())
    changed = 0
    for name, m in video.named_modules():
        twin = image_norms.get(spatial_key(name))
        if isinstance(m, torch.nn.GroupNorm) and isinstance(twin, torch.nn.GroupNorm) and twin.eps != m.eps:
            twin.eps, changed = m.eps, changed + 1
    assert changed > 0  # the eps difference is real; without this alignment the outputs differ by 5e-5
    b, f = 2, 3
    x, t, e = torch.randn(b, f, 4, 16, 16), torch.tensor([0.1, -0.3]), torch.randn(b, 1, 32)
    with torch.no_grad():
        image_out = c.unet(x.flatten(0, 1), t.repeat_interleave(f), e.repeat_interleave(f, 0)).sample
        for name, p in video.named_parameters():
            if name.endswith("mix_factor"):
                p.fill_(1e4)  # sigmoid -> 1: the temporal path bypassed
        video_in = torch.cat([x, torch.randn_like(x)], 2)  # the concat channels must not matter
        video_out = video(video_in, t, e, torch.randn(b, 3), return_dict=False)[0]
    torch.testing.assert_close(video_out.flatten(0, 1), image_out, atol=1e-5, rtol=1e-5)


def test_video_checkpoint_is_a_diffusers_svd_pipeline_folder(tmp_path):
    c = tiny()
    c.unet = inflate(c.unet, 32, 4)
    components.save(c, tmp_path / "model")
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    pipe = StableVideoDiffusionPipeline.from_pretrained(tmp_path / "model")
    assert isinstance(pipe.unet, UNetSpatioTemporalConditionModel)
    loaded = components.load(tmp_path / "model")
    for a, b in zip(c.unet.state_dict().values(), loaded.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_pretrained_reference_loads_image_checkpoints_by_path(tmp_path):
    """Real runs point model.pretrained at SD 2.1 / SVD weights; here a saved tiny folder stands in."""
    c = tiny()
    components.save(c, tmp_path / "image")
    loaded = components.load(tmp_path / "image")
    assert not loaded.is_video
    assert torch.equal(loaded.unet.conv_in.weight, c.unet.conv_in.weight)
