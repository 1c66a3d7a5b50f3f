"""Fréchet Video Distance (paper App. E): the Fréchet distance between Gaussians fitted to I3D
features of real and of generated videos.

The features come from a TorchScript network at a configured path: the paper's protocol uses the
I3D TorchScript of Brooks et al. (StyleGAN-V's i3d_torchscript.pt), called as
`net(videos, rescale=False, resize=True, return_features=True)` on (B, 3, T, H, W) floats in
[-1, 1]; any network with that call works (tests use a tiny one). Without one, evaluation says FVD
was not computed. Before the network, each video goes through the UCF-101 protocol of
svd-reference.md section 4: its first 16 frames, resized to 240x432, centre-cropped to 240x320.

Evaluation computes it between its samples and held-out clips of the same subset, at
evaluate.fps: a figure to compare runs of this project by, not the paper's UCF-101 zero-shot FVD
(text-to-video on UCF-101's class names at 25 fps), which needs that dataset. With few videos the
covariances are rank-deficient and FVD is biased upwards: compare values computed on the same
number of videos only. Content-debiased FVD (VideoMAE features) is not implemented.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cv2
import numpy as np
import torch

FRAMES, RESIZE, CROP = 16, (240, 432), (240, 320)  # (height, width)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)). The trace of the root is the sum of the
    square roots of the eigenvalues of cov1^(1/2) cov2 cov1^(1/2), which is symmetric: no general
    matrix square root, and no complex round-off to discard."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    f = features.astype(np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def protocol(video: np.ndarray, name: str) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (16, 240, 320, 3) uint8: the first 16 frames, resized to 240x432 and
    centre-cropped to 240x320."""
    if len(video) < FRAMES:
        raise ValueError(f"{name}: {len(video)} frames; the FVD protocol takes {FRAMES}")
    (h, w), (ch, cw) = RESIZE, CROP
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.stack(
        [
            cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)[top : top + ch, left : left + cw]
            for f in video[:FRAMES]
        ]
    )


@cache
def detector(path: str, device: str = "cpu") -> Any:
    return torch.jit.load(path, map_location=device).eval()


def features(
    path: str, videos: list[tuple[str, np.ndarray]], batch: int = 8, device: str = "cpu"
) -> np.ndarray:
    """(N, D) features of named (T, H, W, 3) uint8 videos after the protocol."""
    net = detector(path, device)
    out = []
    for i in range(0, len(videos), batch):
        x = np.stack([protocol(v, name) for name, v in videos[i : i + batch]])
        t = torch.from_numpy(x).to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (B, 3, T, H, W)
        with torch.no_grad():
            out.append(net(t, rescale=False, resize=True, return_features=True).float().cpu().numpy())
    return np.concatenate(out)


def fvd(path: str, real: list[tuple[str, np.ndarray]], fake: list[tuple[str, np.ndarray]]) -> float:
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FVD needs at least 2 videos a side (real {len(real)}, generated {len(fake)})")
    return frechet_distance(*gaussian(features(path, real)), *gaussian(features(path, fake)))
