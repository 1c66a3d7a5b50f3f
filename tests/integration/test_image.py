"""infra/Dockerfile, built where a Docker daemon answers (CI machines without one skip it: the
base image and torch's wheel index are on the internet)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def name(pin: str) -> str:
    """`Foo_Bar==1.0` as pip compares names: foo-bar==1.0."""
    project, version = pin.split("==")
    return f"{re.sub(r'[-_.]+', '-', project).lower()}=={version}"


@pytest.mark.skipif(not daemon(), reason="no Docker daemon answers `docker info`")
@pytest.mark.timeout(1800)
def test_the_image_holds_the_pinned_lock_and_no_code() -> None:
    """The CPU build (the CUDA one differs in torch's index alone): every package at the lock's
    version, torch included, and the project's code left to the workspace volume."""
    tag = f"svd-test:{uuid.uuid4().hex[:8]}"
    build = ["docker", "build", "-q", "-f", "infra/Dockerfile", "-t", tag, "."]
    cpu = ["--build-arg", "TORCH_INDEX=https://download.pytorch.org/whl/cpu"]
    subprocess.run([*build, *cpu], cwd=ROOT, check=True, timeout=1700)
    try:
        frozen = subprocess.run(
            ["docker", "run", "--rm", tag, "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout
        pinned = {
            name(line) for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line
        }
        got = {name(line.split("+")[0]) for line in frozen.splitlines()}  # torch's build tag: +cpu
        assert pinned <= got, sorted(pinned - got)
        ls = ["docker", "run", "--rm", tag, "ls", "-A", "/workspace/svd"]
        assert subprocess.run(ls, capture_output=True, text=True, check=True).stdout.split() == [
            "requirements.lock"
        ]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
