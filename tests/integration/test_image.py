"""infra/Dockerfile, built when asked (SVD_BUILD_IMAGE=1) where a Docker daemon answers. Not by
default: the build pulls the base image and torch's wheels from the internet, for minutes, which
`make test` on a machine that merely has a daemon should not."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def daemon() -> bool:
    if os.environ.get("SVD_BUILD_IMAGE") != "1" or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def name(pin: str) -> str:
    """`Foo_Bar==1.0` as pip compares names: foo-bar==1.0."""
    project, version = pin.split("==")
    return f"{re.sub(r'[-_.]+', '-', project).lower()}=={version}"


@pytest.mark.skipif(not daemon(), reason="SVD_BUILD_IMAGE=1 and a Docker daemon that answers needed")
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
        got = {name(line.split("+")[0]) for line in frozen.splitlines() if "==" in line}  # torch's: +cpu
        assert pinned <= got, sorted(pinned - got)
        ls = ["docker", "run", "--rm", tag, "ls", "-A", "/workspace/svd"]
        assert subprocess.run(ls, capture_output=True, text=True, check=True).stdout.split() == [
            "requirements.lock"
        ]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
