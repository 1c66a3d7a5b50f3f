"""Session fixtures for the curation tests: one small synthetic corpus and one folder of real videos,
each curated once, because decoding is what costs time on a 2-core runner."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from svd.curation.curate import curate
from svd.media.synth import make_corpus
from svd.params import CurateParams, SynthParams

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# The repository is cloned with the shared folder beside it: <root>/main/tests/curation/conftest.py.
MEDIA = Path(__file__).resolve().parents[4] / "shared" / "media"
SEED = 0

# Small but complete: with seed 0 it has static, slow and fast scenes, small and large text, several
# fades, dissolves and a sub-second scene (test_synth checks that, so a change of generator cannot
# silently hollow it out).
SMALL = dict(
    videos=5,
    segments=(3, 4),
    segment_seconds=(2.0, 3.0),
    fade_every=2,
    dissolve_every=3,
    short_every=4,
    text_fraction=0.5,
)


@pytest.fixture(scope="session")
def seed() -> int:
    return SEED


@pytest.fixture(scope="session")
def synth_params(tmp_path_factory: pytest.TempPathFactory) -> SynthParams:
    return SynthParams(out=tmp_path_factory.mktemp("synth") / "raw", **SMALL)


@pytest.fixture(scope="session")
def corpus(synth_params: SynthParams) -> Path:
    return make_corpus(synth_params, SEED)


@pytest.fixture(scope="session")
def curate_params(corpus: Path) -> CurateParams:
    root = corpus.parent
    return CurateParams(sources=(str(corpus),), out=str(root / "curated"), cache=str(root / "cache"))


@pytest.fixture(scope="session")
def synth_table(curate_params: CurateParams) -> pd.DataFrame:
    return curate(curate_params, seed=SEED)


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"{MEDIA} is missing: the real-video tests need the shared media folder beside the repo")
    return MEDIA


@pytest.fixture(scope="session")
def real_dir(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared videos plus a truncated copy of one of them, side by side."""
    d = tmp_path_factory.mktemp("real") / "src"
    d.mkdir()
    for f in sorted(media.iterdir()):
        (d / f.name).symlink_to(f)
    data = (media / "testvideo.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return d


@pytest.fixture(scope="session")
def real_table(real_dir: Path) -> Iterator[pd.DataFrame]:
    out = real_dir.parent / "curated"
    table = curate(CurateParams(sources=(str(real_dir),), out=str(out), cache=str(real_dir.parent / "cache")))
    yield table
    shutil.rmtree(out, ignore_errors=True)
