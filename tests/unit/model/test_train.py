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
