"""dvc.yaml is the single source of what a step reads. Its code dependencies are exactly the files
the step's module imports, transitively (so an edit re-runs exactly the steps whose outputs it can
change), and every dependency is a file or another stage's output, never a source folder.

An import line marked `# side output` feeds only MLflow (in-training samples, the served model's
code, reports) and is not followed: editing the sampler re-runs evaluation, not training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
MARK = "# side output"
# What a module uses by name, which its imports do not show: the registry lists its own package, and
# annotate runs every scorer and the data checks read every scorer's columns (their ranges, whether
# they may be null), so each scorer file is a dependency of the steps that annotate or check.
SCORERS = {
    f"svd.curation.scorers.{f.stem}"
    for f in (ROOT / "svd" / "curation" / "scorers").glob("*.py")
    if f.stem not in ("__init__", "base")
}
RUNS = {"svd.curation.annotate": SCORERS, "svd.curation.checks": SCORERS}


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for f in (base / "__init__.py", base.with_suffix(".py")):
        if f.exists():
            return f
    return None


def imported(f: Path, module: str) -> set[str]:
    """svd modules that `f` imports anywhere (functions included), bar the side-output lines."""
    lines = f.read_text().splitlines()
    package = module if f.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if MARK in lines[node.lineno - 1] if isinstance(node, ast.Import | ast.ImportFrom) else True:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] == "svd"}


def code_closure(module: str) -> set[str]:
    """Source files (relative to the repo, empty __init__ files left out) a module runs."""
    seen: set[Path] = set()
    todo = {module}
    while todo:
        name = todo.pop()
        f = module_file(name)
        if f is None or f in seen:
            continue
        seen.add(f)
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}  # packages run their __init__
        todo |= imported(f, name) | RUNS.get(name, set())
    return {str(f.relative_to(ROOT)) for f in seen if f.stat().st_size}


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_code_deps_are_exactly_the_files_the_step_runs(stage: str) -> None:
    step = stage.split("-")[0]  # train-video -> the train step
    deps = PIPELINE[stage]["deps"]
    assert {d for d in deps if d.startswith("svd/")} == code_closure(f"svd.steps.{step}")
    made = [o for s in PIPELINE.values() for o in s.get("outs", []) + s.get("metrics", [])]
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in made}
    for d in deps:  # a source file, or (in) another stage's output
        assert (d.endswith(".py") and (ROOT / d).is_file()) or any(
            d == o or d.startswith(f"{o}/") for o in outs
        ), d


def test_side_output_edges_keep_the_sampler_out_of_training() -> None:
    train = set(PIPELINE["train-video"]["deps"])
    assert "svd/diffusion/sampler.py" not in train and "svd/train/loop.py" in train
    assert "svd/diffusion/sampler.py" in PIPELINE["evaluate"]["deps"]
