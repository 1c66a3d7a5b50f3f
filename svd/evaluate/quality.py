"""Metrics of a generated video that need no learned network, so evaluation always reports them:

- temporal consistency: the flow-warping error, the mean absolute difference (0-1 scale) between
  each frame and the next frame warped back onto it by their Farneback optical flow (the motion
  scorer's settings). A flicker or a
  jump between frames raises it; smooth motion that the flow explains does not;
- first-frame fidelity (image-to-video): PSNR and SSIM of the generated first frame against the
  conditioning frame.

SSIM is Wang et al. 2004's: luminance, 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03.
"""

from __future__ import annotations

import cv2
import numpy as np

from svd.curation.scorers.motion import ITERATIONS, LEVELS, POLY_N, POLY_SIGMA, PYR_SCALE, WINSIZE


def warping_error(video: np.ndarray) -> float:
    """(T, H, W, 3) uint8, T >= 2 -> mean |frame_t - warp(frame_t+1, flow t -> t+1)| in [0, 1]."""
    if len(video) < 2:
        raise ValueError(f"warping error needs 2 frames or more, got {len(video)}")
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video]
    h, w = grey[0].shape
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32)
    flow: np.ndarray = np.zeros((h, w, 2), np.float32)
    errors = []
    for t in range(len(video) - 1):  # the flow settings of the motion scorer
        flow = cv2.calcOpticalFlowFarneback(
            grey[t], grey[t + 1], flow, PYR_SCALE, LEVELS, WINSIZE, ITERATIONS, POLY_N, POLY_SIGMA, 0
        )
        to = grid + flow
        back = cv2.remap(
            video[t + 1], to[..., 0], to[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        errors.append(np.abs(video[t].astype(np.float32) - back.astype(np.float32)).mean() / 255)
    return float(np.mean(errors))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """dB between two uint8 images of the same size; inf when they are equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luminance of two uint8 RGB images of the same size."""
    x, y = (cv2.cvtColor(i, cv2.COLOR_RGB2GRAY).astype(np.float64) for i in (a, b))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())
