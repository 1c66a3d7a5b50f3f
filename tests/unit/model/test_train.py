"""Training is a pure function of params, data and seed (the three-stage run is in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

from svd.train.loop import train_stage


def test_training_is_deterministic_for_a_seed(tiny_params):
    p = tiny_params
    short = p.model_copy(
        update={
            "train": p.train.model_copy(
                update={
                    "image": p.train.image.model_copy(
                        update={
                            "autoencoder_steps": 5,
                            "steps": 5,
                            "out": Path(p.train.image.out).with_name("det"),
                        }
                    )
                }
            )
        }
    )
    a = train_stage(short, "image", p.filter.out, p.curate.out)
    b = train_stage(short, "image", p.filter.out, p.curate.out)
    assert a.losses == b.losses


def test_the_papers_stage_table_is_a_params_file():
    """svd-reference.md's Stage III image-to-video row: 320x576 then 576x1024, 50k + 50k steps at
    batch 768, lr 3e-5, (P_mean, P_std) (0.7, 1.6) then (1.0, 1.6), EMA 0.9999; and Stage I's
    time-embedding-only warm-up. A phase keeps whatever it does not name; a typo is an error."""
    import pytest

    from svd.params import ParamsError, load

    root = Path(__file__).resolve().parents[3]
    paper = {
        "image": {"phases": [{"trainable": "time_embedding", "steps": 1000}, {"steps": 30000}]},
        "finetune": {
            "frames": 14,
            "batch_size": 768,
            "lr": 3e-5,
            "p_std": 1.6,
            "ema_decay": 0.9999,
            "phases": [
                {"resolution": [320, 576], "steps": 50000, "p_mean": 0.7},
                {"resolution": [576, 1024], "steps": 50000, "p_mean": 1.0},
            ],
        },
    }
    p = load(root / "params.yaml", {"train": paper})
    warm, full = p.train.image.schedule()
    assert (warm.trainable, warm.steps, full.trainable, full.steps) == ("time_embedding", 1000, "all", 30000)
    low, high = p.train.finetune.schedule()
    assert (low.resolution, low.p_mean, high.resolution, high.p_mean) == ((320, 576), 0.7, (576, 1024), 1.0)
    assert low.lr == high.lr == 3e-5 and low.p_std == high.p_std == 1.6 and high.ema_decay == 0.9999
    assert p.train.video.schedule() == [p.train.video]  # a stage without phases is its own one phase
    with pytest.raises(ParamsError, match="reslution"):
        load(root / "params.yaml", {"train": {"image": {"phases": [{"reslution": [8, 8]}]}}})
