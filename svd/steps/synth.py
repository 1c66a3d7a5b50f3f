"""synth: the synthetic corpus with its ground truth (cuts, text, motion) for tests and demos."""

from __future__ import annotations

from pathlib import Path

from svd import tracking  # side output
from svd.media.synth import make_corpus
from svd.params import Params


def synth(p: Params, tags: tracking.Tags = None) -> Path:
    with tracking.run("synth", p, tags, "Make the synthetic corpus and its ground truth."):
        return make_corpus(p.synth, p.seed)
