"""The shared folder of real videos, which the repository is cloned beside: <root>/main/tests/unit/media."""

from __future__ import annotations

from pathlib import Path

import pytest

MEDIA = Path(__file__).resolve().parents[4] / "shared" / "media"


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"{MEDIA} is missing: the real-video tests need the shared media folder beside the repo")
    return MEDIA
