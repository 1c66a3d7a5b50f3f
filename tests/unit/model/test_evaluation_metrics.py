"""Evaluation's metrics against references: the Fréchet distance against scipy's matrix square root
and against the closed form for diagonal Gaussians, FVD through a tiny TorchScript feature network
called as the paper's I3D is, SSIM against scipy's Gaussian filter, and the warping error on motion
it can and cannot explain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg, ndimage

from svd.evaluate import fvd, quality
from svd.evaluate.run import fvd_skipped


def test_frechet_distance_matches_scipy_and_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    root = linalg.sqrtm(cov1 @ cov2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root)
    assert fvd.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(reference, rel=1e-9)
    # diagonal Gaussians: |mu1 - mu2|^2 + sum (sigma1 - sigma2)^2
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    known = 1.0**2 + 2.0**2 + ((1 - 2) ** 2 + 0 + (3 - 1) ** 2)
    got = fvd.frechet_distance(np.zeros(3), np.diag(s1), np.array([1.0, 2.0, 0.0]), np.diag(s2))
    assert got == pytest.approx(known, rel=1e-12)
    assert fvd.frechet_distance(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-9)


class TinyI3D(torch.nn.Module):
    """The call of Brooks et al.'s I3D TorchScript: (B, 3, T, H, W) in [-1, 1] -> (B, D) features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, (3, 7, 7), stride=(2, 4, 4))

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if resize:
            x = torch.nn.functional.interpolate(x, size=(x.shape[2], 112, 112), mode="trilinear")
        return torch.cat([self.conv(x).relu().mean(dim=(2, 3, 4)), x.mean(dim=(2, 3, 4))], 1)


@pytest.fixture(scope="module")
def i3d(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fvd") / "tiny_i3d.pt"
    torch.jit.script(TinyI3D()).save(str(path))
    return str(path)


def videos(n: int, brightness: int, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (f"v{i}", np.clip(rng.normal(brightness, 30, (16, 36, 64, 3)), 0, 255).astype(np.uint8))
        for i in range(n)
    ]


def test_fvd_is_zero_on_the_same_videos_and_grows_with_the_shift(i3d: str) -> None:
    real = videos(6, 100, 0)
    assert fvd.protocol(real[0][1], "v0").shape == (16, 240, 320, 3)
    assert fvd.fvd(i3d, real, real) == pytest.approx(0.0, abs=1e-6)
    near, far = fvd.fvd(i3d, real, videos(6, 110, 1)), fvd.fvd(i3d, real, videos(6, 160, 1))
    assert 0 < near < far
    with pytest.raises(ValueError, match=r"short\.mp4: 8 frames"):
        fvd.protocol(real[0][1][:8], "short.mp4")


def test_evaluation_says_why_fvd_was_not_computed() -> None:
    assert "names no I3D" in (fvd_skipped(None, 16) or "")
    assert "have 14 frames" in (fvd_skipped("i3d.pt", 14) or "")  # SVD's 14 frames: the protocol takes 16
    assert fvd_skipped("i3d.pt", 16) is None


def test_ssim_matches_a_scipy_reference_and_psnr_its_definition() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert quality.ssim(a, a) == pytest.approx(1.0) and quality.psnr(a, a) == float("inf")
    grey = [0.299 * i[..., 0] + 0.587 * i[..., 1] + 0.114 * i[..., 2] for i in (a, b)]
    x, y = (np.round(g) for g in grey)  # OpenCV's RGB2GRAY rounds to uint8

    def blur(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")  # an 11x11 window

    mx, my = blur(x), blur(y)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    reference = (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    assert quality.ssim(a, b) == pytest.approx(reference, abs=1e-4) and quality.ssim(a, b) < 0.99
    offset = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = ((offset.astype(float) - a) ** 2).mean()
    assert quality.psnr(a, offset) == pytest.approx(10 * np.log10(255**2 / mse))


def test_warping_error_explains_motion_but_not_flicker() -> None:
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.integers(0, 256, (80, 140)).astype(float), 2)
    texture = np.repeat(((texture - texture.min()) / np.ptp(texture) * 255)[..., None], 3, -1).astype(
        np.uint8
    )
    still = np.stack([texture[:, :96]] * 6)
    panning = np.stack([texture[:, 2 * t : 2 * t + 96] for t in range(6)])  # 2 px a frame
    flicker = still.copy()
    flicker[1::2] = np.clip(flicker[1::2].astype(int) + 60, 0, 255).astype(np.uint8)
    still_e, pan_e, flicker_e = (quality.warping_error(v) for v in (still, panning, flicker))
    assert still_e < 1e-3  # measured 0.0002, 0.003 and 0.23
    assert pan_e < 0.01 and flicker_e > 0.15
    naive = np.abs(np.diff(panning.astype(float), axis=0)).mean() / 255  # the difference without flow: 0.07
    assert pan_e < naive / 10
