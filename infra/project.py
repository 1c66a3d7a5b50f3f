"""A throwaway copy of this project: its code, dvc.yaml, Makefile and params.yaml (with overrides),
as a git and DVC repository of its own with a local DVC remote. The end-to-end tests and the
pipeline bench run each door in one, so nothing they do touches the checkout; the tests run the
README's commands in one as a user types them."""

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
COPIED = (
    "svd",
    "flows",
    "infra",
    ".dvc",
    "dvc.yaml",
    ".dvcignore",
    "pyproject.toml",
    "requirements.lock",
    "Makefile",
)


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
            shutil.copytree(
                src, proj / name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp", "config.local")
            )
        else:  # with its mtime: make must find a linked .venv newer than pyproject.toml, as it is
            shutil.copy2(src, proj / name)
    merged = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), dict(params))
    (proj / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    ignored = ["/.venv", "/data/", "/models/", "/reports/", "/mlflow.db", "/mlartifacts/", "/.stack/"]
    (proj / ".gitignore").write_text("".join(f"{line}\n" for line in ignored))
    (proj / ".venv").symlink_to(BIN.parent)  # where `make venv` builds it, for the README's commands
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
    # make must count the linked venv as built: a rebuild would go through the link into this
    # checkout's venv (the Makefile refuses it, but then every make target in the project fails)
    plan = subprocess.run(
        ["make", "-n", ".venv/bin/svd"], cwd=proj, env=run_env, capture_output=True, check=True
    )
    if b"-m venv" in plan.stdout:
        raise RuntimeError(f"make would rebuild {proj / '.venv'}:\n{plan.stdout.decode()}")
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


def readme_commands(holding: str) -> list[str]:
    """The commands of the README's bash block that holds `holding`, as written: continued lines
    joined, comment lines dropped (bash drops the rest)."""
    blocks = [b.split("\n```", 1)[0] for b in (ROOT / "README.md").read_text().split("```bash\n")[1:]]
    held = [b for b in blocks if holding in b]
    if len(held) != 1:
        raise ValueError(f"{len(held)} of the README's bash blocks hold {holding!r}")
    (block,) = held
    lines = block.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def user_shell(env: Mapping[str, str]) -> dict[str, str]:
    """A user's shell in a project: no venv on PATH and no tracking URI (the README's commands set
    what they need). PYTHONPATH stays: it points at the project's own copy of the code, which the
    checkout's editable install would otherwise shadow."""
    path = [d for d in env["PATH"].split(os.pathsep) if Path(d) != BIN]
    return {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"} | {"PATH": os.pathsep.join(path)}
