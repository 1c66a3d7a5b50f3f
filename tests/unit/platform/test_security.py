"""What a file or a name from elsewhere can do: weights and resume points load without unpickling,
and names taken from videos cannot place an output outside its folder or prefix."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from svd import storage
from svd.curation.annotate import video_key
from svd.model import components
from svd.params import Architecture
from svd.train.resume import ResumeFile, read_point, write_point


def test_weights_load_from_safetensors_only(tmp_path: Path) -> None:
    """A model folder whose UNet is a pickle (.bin) is refused, not unpickled: unpickling runs code."""
    c = components.build(Architecture(), 32)
    components.save(c, tmp_path / "model")
    state = components.load(tmp_path / "model").unet.state_dict()  # safetensors throughout: loads
    unet = tmp_path / "model" / "unet"
    torch.save(state, unet / "diffusion_pytorch_model.bin")
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(OSError, match="safetensors"):
        components.load(tmp_path / "model")


def test_a_resume_point_is_safetensors_and_reads_back_whole(tmp_path: Path) -> None:
    """Everything a point holds (weights, an optimizer's state with int keys, generator states, losses
    with a NaN, None) comes back equal, from a file safetensors reads: no pickle in it."""
    from safetensors import safe_open

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(3)
    state = {
        "unet": net.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {"loop": g.get_state(), "torch": torch.get_rng_state()},
        "losses": [0.5, math.nan],
        "ema": None,
        "phase": "denoiser",
        "step": 7,
    }
    write_point(tmp_path / "p.resume", state)
    with safe_open(tmp_path / "p.resume", "pt") as f:  # a plain safetensors file
        assert len(list(f.keys())) == 2 + 2 * 3 + 2  # weights; step and 2 moments a weight; rng
    back = read_point(tmp_path / "p.resume")
    assert back.keys() == state.keys() and back["step"] == 7 and back["ema"] is None
    assert back["losses"][0] == 0.5 and math.isnan(back["losses"][1])
    assert sorted(back["optimizer"]["state"]) == [0, 1]  # int keys stay ints, as torch expects
    opt.load_state_dict(back["optimizer"])
    for a, b in zip(state["optimizer"]["state"].values(), back["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(state["unet"][k], back["unet"][k]) for k in state["unet"])
    assert torch.equal(back["rng"]["loop"], state["rng"]["loop"])


def test_a_pickled_resume_point_is_not_unpickled(tmp_path: Path) -> None:
    """A point in the pickle format of earlier versions is passed over (the stage starts over)."""
    torch.save({"phase": "denoiser", "step": 3}, tmp_path / "p.resume")
    assert ResumeFile(tmp_path / "p.resume", "any").load() is None


HOSTILE = [
    "../../etc/passwd.mp4",
    "/abs/olute.mp4",
    "s3://bucket/videos/../../../other/x.mp4",
    "..\\..\\windows.mp4",
    "\u202egnp.mp4",  # right-to-left override
    "\uff0e\uff0e\uff0fwide.mp4",  # full-width ../
    "\u2025\u2025/leader.mp4",  # two-dot leaders
    "caf\u00e9 \U0001f3ac\n\t.mp4",
    "." * 300 + ".mp4",
    ".mp4",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_clip_keys_from_hostile_video_names_stay_inside(name: str, tmp_path: Path) -> None:
    """Clip keys name files, shard members and S3 objects: plain ASCII, bounded, no dot, no slash."""
    key = video_key(name, "0123456789abcdef")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}-0123456789", key), key
    inside = Path(storage.join(tmp_path, f"{key}.mp4")).resolve()
    assert inside.parent == tmp_path.resolve()
    assert storage.join("s3://bucket/out", f"{key}.mp4") == f"s3://bucket/out/{key}.mp4"


@pytest.mark.parametrize("part", ["../x", "a/../../x", "/etc/passwd", "a/./../../x", ".."])
@pytest.mark.parametrize("base", ["s3://bucket/prefix", "local"])
def test_output_paths_cannot_climb_out_of_their_prefix(part: str, base: str, tmp_path: Path) -> None:
    root = base if base.startswith("s3://") else str(tmp_path)
    with pytest.raises(ValueError, match="would escape"):
        storage.join(root, part)
