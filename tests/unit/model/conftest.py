"""A tiny curated dataset, built once per session by the real curation code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svd import params as P
from svd import stages

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory) -> P.Params:
    d = tmp_path_factory.mktemp("curated")
    smoke = yaml.safe_load((ROOT / "tests" / "e2e" / "smoke.yaml").read_text())
    paths = {
        "synth": {"out": str(d / "raw")},
        "curate": {"sources": [str(d / "raw")], "out": str(d / "curated"), "cache": str(d / "cache")},
        "filter": {"out": str(d / "subsets")},
        "train": {
            s: {"out": str(d / s), **({"init": str(d / prev)} if prev else {})}
            for s, prev in (("image", None), ("video", "image"), ("finetune", "video"))
        },
        "evaluate": {"out": str(d / "eval")},
    }
    p = P.load(ROOT / "params.yaml", P.merge(smoke, paths))
    from svd.curation.curate import curate
    from svd.curation.filter import make_subsets, write_subsets

    stages.synth(p)
    table = curate(p.curate, p.seed)
    write_subsets(make_subsets(table, p.filter), p.filter.out)
    return p
