"""The motion-bucket map: the training clips' quantiles, so each bucket holds an equal share of
them, and it travels with the model."""

from __future__ import annotations

import numpy as np
import torch

from svd.model import components
from svd.model.motion import FILE, MotionBuckets
from svd.params import Architecture


def test_buckets_share_the_training_clips_evenly():
    scores = np.random.default_rng(0).lognormal(0.0, 1.0, 5000)  # skewed, as flow magnitudes are
    m = MotionBuckets.from_scores(scores)
    ids = m.bucket(torch.from_numpy(scores)).numpy()
    assert ids.min() == 0 and ids.max() == 255
    counts = np.histogram(ids, bins=8, range=(0, 256))[0]
    assert counts.min() > 0.9 * counts.max()  # a linear map would crowd the low buckets
    assert abs(float(m.bucket(torch.tensor([np.median(scores)]))[0]) - 127.5) <= 1
    ordered = m.bucket(torch.linspace(0, 20, 200)).numpy()
    assert (np.diff(ordered) >= 0).all()  # more motion, never a lower bucket
    assert m.bucket(torch.tensor([-1.0, 1e9])).tolist() == [0.0, 255.0]  # outside the range: clamped


def test_a_score_shared_by_many_clips_maps_to_the_middle_of_its_run():
    scores = np.concatenate([np.zeros(500), np.linspace(1, 2, 500)])  # half the clips are static
    m = MotionBuckets.from_scores(scores)
    assert abs(float(m.bucket(torch.tensor([0.0]))[0]) - 64) <= 1  # the middle of buckets 0..128
    same = MotionBuckets.from_scores(np.full(10, 3.0))  # every clip scored alike: one middle bucket
    assert same.bucket(torch.tensor([3.0, 9.0])).tolist() == [128.0, 128.0]


def test_the_map_is_saved_and_loaded_with_the_model(tmp_path):
    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    c.motion = MotionBuckets.from_scores(np.arange(300.0))
    components.save(c, tmp_path / "m")
    assert (tmp_path / "m" / FILE).exists()
    assert components.load(tmp_path / "m").motion == c.motion


def test_the_registered_model_takes_a_motion_score_through_its_map(monkeypatch):
    """A served model asked for a curated motion score samples at the score's bucket."""
    import base64
    import io

    import pandas as pd
    from PIL import Image

    import svd.generate
    from svd.media.io import read_frames
    from svd.model.inflate import inflate
    from svd.registry import SVDPipelineModel, motion_bucket_for

    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    c.unet = inflate(c.unet, 32, 4)
    c.motion = MotionBuckets.from_scores(np.linspace(0.0, 10.0, 101))
    model = SVDPipelineModel()
    model.components = c
    asked: list[int] = []
    sample = svd.generate.image_to_video
    monkeypatch.setattr(
        svd.generate, "image_to_video", lambda *a, **k: asked.append(k["motion_bucket"]) or sample(*a, **k)
    )
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(png, "PNG")
    row = {"image": base64.b64encode(png.getvalue()).decode(), "frames": 4, "steps": 2, "seed": 3}
    assert motion_bucket_for(c, 7.5) == 191  # three quarters of the training clips move less
    asks = [row | {"motion_score": 7.5}, row | {"motion_bucket": 20, "height": 32, "width": 48}]
    videos = model.predict(None, pd.DataFrame(asks))["video"]
    assert asked == [191, 20]
    assert [read_frames(base64.b64decode(v)).shape for v in videos] == [(4, 32, 32, 3), (4, 32, 48, 3)]
