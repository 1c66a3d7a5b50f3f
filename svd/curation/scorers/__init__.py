"""The scorers: every module of this package defines one (see base.py for the contract).

`SCORERS` maps a scorer's name (its module name and its key under `curate.scorers` in params.yaml)
to its class, found by listing the package, so adding a scorer is adding a file. `version` hashes
a scorer's source file: the annotation cache keys on it, so an edit to a scorer recomputes that
scorer's columns and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from functools import cache
from pathlib import Path
from typing import Any

from svd.curation.scorers.base import Column, Scorer, ScorerParams


def _discover() -> dict[str, type[Scorer]]:
    found: dict[str, type[Scorer]] = {}
    for m in pkgutil.iter_modules(__path__):
        if m.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{m.name}")
        classes = [
            c
            for c in vars(module).values()
            if inspect.isclass(c) and c.__module__ == module.__name__ and getattr(c, "name", None) == m.name
        ]
        if len(classes) != 1:
            raise TypeError(f"{module.__file__}: needs exactly one scorer class with name = {m.name!r}")
        found[m.name] = classes[0]  # type: ignore[assignment]  # checked against the Protocol in tests
    return dict(sorted(found.items()))


SCORERS: dict[str, type[Scorer]] = _discover()


def validate(raw: dict[str, Any]) -> dict[str, ScorerParams]:
    """params.yaml's `curate.scorers` section -> typed params per scorer; unknown names fail."""
    unknown = set(raw) - set(SCORERS)
    if unknown:
        raise ValueError(f"unknown scorer(s) {sorted(unknown)}; known: {sorted(SCORERS)}")
    return {name: SCORERS[name].Params.model_validate(raw[name] or {}) for name in sorted(raw)}


def columns(names: list[str] | None = None) -> dict[str, Column]:
    """Score columns of the given scorers (all registered when None), in a stable order."""
    out: dict[str, Column] = {}
    for name in names if names is not None else list(SCORERS):
        out |= SCORERS[name].columns
    return out


FRAMES_CODE = ("annotate.py", "picks.py", "scorers/base.py")  # in svd/curation: how frames are made


@cache
def version(name: str) -> str:
    """The scorer's code and the code that makes the frames it sees: a change to either is a new
    cache entry, never a stale score."""
    root = Path(__file__).resolve().parents[1]
    files = [Path(inspect.getfile(SCORERS[name])), *(root / f for f in FRAMES_CODE)]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


@cache
def instance(name: str, params: ScorerParams) -> Scorer:
    """One scorer object per process and params: a model it loads is loaded once per worker."""
    return SCORERS[name](params)
