"""synth: the synthetic corpus with its ground truth (cuts, text, motion) for tests and demos."""

from __future__ import annotations

from pathlib import Path

from svd.media.synth import make_corpus
from svd.params import Params


def synth(p: Params) -> Path:
    return make_corpus(p.synth, p.seed)
