"""Resume points: what a stage killed at any moment needs to go on as if it had never stopped.

A point holds every network's weights (and the autoencoder's latent scale), the optimizer, the EMA
shadow, both random generators (the loop's and torch's global one), the phase (autoencoder or
denoiser), its next step and the losses so far. Every random draw of the loop comes from those
generators, so on CPU a resumed stage ends with the weights of an uninterrupted one, bit for bit.

A point is one safetensors file, `<out>.resume`, replaced atomically every `checkpoint_every` steps
and removed once the stage's output is saved. Its tensors are stored flat, and the nesting around
them (dicts with int or str keys, lists, numbers, strings) as JSON in the file's metadata: reading a
point runs no pickle, so a point from elsewhere (an artifact store, a shared disk) cannot run code.
It carries a fingerprint of everything that shapes the run (the stage, model and conditioning
params, the seed and the training clips); a point from a run with another fingerprint is ignored,
with a warning, rather than continued into a different run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

log = logging.getLogger("svd.train")


def fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ResumeFile:
    path: Path
    fingerprint: str

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = read_point(self.path)
        except (SafetensorError, KeyError, ValueError) as e:  # a pickle of an older version, or cut short
            log.warning("%s: not a resume point this version reads (%s); starting over", self.path, e)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s: from a run with other params or data; starting over", self.path)
            return None
        log.info("%s: resuming %s at step %d", self.path, state["phase"], state["step"])
        return state

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_point(tmp, {**state, "fingerprint": self.fingerprint})
        os.replace(tmp, self.path)  # a kill mid-write leaves the previous point whole

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(f".tmp-{self.path.name}").unlink(missing_ok=True)


def write_point(path: Path, state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def pack(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            name = str(len(tensors))
            t = x.detach().cpu().contiguous()
            if t.untyped_storage().data_ptr() in seen:  # safetensors refuses tensors sharing memory
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
            tensors[name] = t
            return {"tensor": name}
        if isinstance(x, dict):
            return {"dict": [[k, pack(v)] for k, v in x.items()]}
        if isinstance(x, list | tuple):
            return {"list": [pack(v) for v in x]}
        if x is None or isinstance(x, bool | int | float | str):
            return {"value": x}
        raise TypeError(f"resume point: cannot store {type(x).__name__}")

    structure = json.dumps(pack(state))
    save_file(tensors, path, metadata={"structure": structure})


def read_point(path: Path) -> dict[str, Any]:
    """A point as `write_point` was given it, its tensors on the CPU (any device can resume)."""
    with safe_open(path, "pt", device="cpu") as f:
        structure = json.loads((f.metadata() or {})["structure"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)

    def unpack(x: dict[str, Any]) -> Any:
        kind, v = next(iter(x.items()))
        if kind == "tensor":
            return tensors[v]
        if kind == "dict":
            return {k: unpack(item) for k, item in v}
        if kind == "list":
            return [unpack(item) for item in v]
        return v

    state = unpack(structure)
    assert isinstance(state, dict)
    return state


def rng_state(g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"loop": g.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(g: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    g.set_state(state["loop"])
    torch.set_rng_state(state["torch"])
