"""What a stage reports while it trains, behind one small interface. svd.tracking records to
MLflow; the loop never imports a tracker, and a test or notebook can pass its own."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Recorder(Protocol):
    def metrics(self, values: dict[str, float], step: int) -> None: ...

    def video(self, name: str, frames: np.ndarray, fps: float, step: int) -> None:
        """A sample, (F, H, W, 3) uint8, made with the weights at `step`."""

    def checkpoint(self, name: str, path: Path, step: int) -> None:
        """A resume point just written to `path`: all a killed run needs to go on."""


class Silent:
    def metrics(self, values: dict[str, float], step: int) -> None:
        pass

    def video(self, name: str, frames: np.ndarray, fps: float, step: int) -> None:
        pass

    def checkpoint(self, name: str, path: Path, step: int) -> None:
        pass
