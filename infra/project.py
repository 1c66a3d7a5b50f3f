"""A throwaway copy of this project: its code, dvc.yaml and params.yaml (with overrides), as a git
and DVC repository of its own with a local DVC remote. The end-to-end tests and the pipeline
bench run each door in one, so nothing they do touches the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from svd.params import merge

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COPIED = ("svd", "flows", "infra", ".dvc", "dvc.yaml", ".dvcignore", "pyproject.toml")


def scratch_project(
    root: Path, params: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[Path, dict[str, str]]:
    """`root`/project with params.yaml = this checkout's merged with `params`; the environment to
    run in it (this venv first on PATH, the copied code on PYTHONPATH, MLflow in its own SQLite)."""
    proj = root / "project"
    proj.mkdir(parents=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, proj / name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp"))
        else:
            shutil.copy(src, proj / name)
    merged = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), dict(params))
    (proj / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    (proj / ".gitignore").write_text("/.venv\n/data/\n/models/\n/reports/\n/mlflow.db\n/mlartifacts/\n")
    run_env = {
        **env,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(proj),  # the copied code, not the checkout's, is what runs
        "MLFLOW_TRACKING_URI": f"sqlite:///{proj / 'mlflow.db'}",
    }
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        [*git, "commit", "-qm", "scratch project"],
        [str(BIN / "dvc"), "remote", "add", "-f", "-d", "localstore", str(root / "remote")],
    ):
        subprocess.run(cmd, cwd=proj, env=run_env, check=True, capture_output=True)
    return proj, run_env


def outs(proj: Path) -> dict[str, str]:
    """Every output's DVC hash in the project's dvc.lock, bar the registration (it names the MLflow
    version and run): what two doors or two workspaces must agree on."""
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    return {
        o["path"]: o["md5"]
        for s in lock.values()
        for o in s.get("outs", [])
        if "registration" not in o["path"]
    }
