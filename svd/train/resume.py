"""Resume points: what a stage killed at any moment needs to go on as if it had never stopped.

A point holds every network's weights (and the autoencoder's latent scale), the optimizer, the EMA
shadow, both random generators (the loop's and torch's global one), the phase (autoencoder or
denoiser), its next step and the losses so far. Every random draw of the loop comes from those
generators, so on CPU a resumed stage ends with the weights of an uninterrupted one, bit for bit.

A point is one file, `<out>.resume`, replaced atomically every `checkpoint_every` steps and removed
once the stage's output is saved. It carries a fingerprint of everything that shapes the run (the
stage, model and conditioning params, the seed and the training clips); a point from a run with
another fingerprint is ignored, with a warning, rather than continued into a different run.
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
        state = torch.load(self.path, map_location="cpu", weights_only=True)  # any device can resume
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s: from a run with other params or data; starting over", self.path)
            return None
        log.info("%s: resuming %s at step %d", self.path, state["phase"], state["step"])
        return state

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({**state, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.path)  # a kill mid-write leaves the previous point whole

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(f".tmp-{self.path.name}").unlink(missing_ok=True)


def rng_state(g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"loop": g.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(g: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    g.set_state(state["loop"])
    torch.set_rng_state(state["torch"])
