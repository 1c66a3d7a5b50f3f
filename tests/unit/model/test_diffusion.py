"""EDM maths against closed forms: Gaussian data has an exact optimal denoiser, so the sampler and
the loss can be checked without training anything."""

import math

import pytest
import torch

from svd.diffusion.edm import EDMPrecond, edm_loss, loss_weight, sample_sigmas
from svd.diffusion.sampler import euler_sample, frame_guidance, karras_sigmas


class Probe(torch.nn.Module):
    """Backbone that records what it was called with and returns a constant."""

    def forward(self, x_in, c_noise, **cond):
        self.x_in, self.c_noise, self.cond = x_in, c_noise, cond
        return torch.full_like(x_in[:, :, :4] if x_in.ndim == 5 else x_in, 0.5)


def test_preconditioning_is_the_papers_four_equations():
    probe = Probe()
    d = EDMPrecond(probe)
    x, s = torch.randn(2, 4, 8, 8), torch.tensor([0.5, 3.0])
    out = d(x, s)
    for i, sigma in enumerate(s.tolist()):
        c_skip, c_out, c_in = (
            1 / (sigma**2 + 1),
            -sigma / math.sqrt(sigma**2 + 1),
            1 / math.sqrt(sigma**2 + 1),
        )
        torch.testing.assert_close(out[i], c_skip * x[i] + c_out * 0.5)
        torch.testing.assert_close(probe.x_in[i], c_in * x[i])
        assert probe.c_noise[i].item() == pytest.approx(0.25 * math.log(sigma))


def test_concat_conditioning_is_appended_unscaled_on_the_channel_axis():
    probe = Probe()
    x, concat = torch.randn(1, 3, 4, 8, 8), torch.randn(1, 3, 4, 8, 8)  # (B, F, C, H, W)
    EDMPrecond(probe)(x, torch.tensor([2.0]), concat=concat)
    assert probe.x_in.shape == (1, 3, 8, 8, 8)
    torch.testing.assert_close(probe.x_in[:, :, 4:], concat)


def test_loss_weight_and_sigma_distribution():
    assert loss_weight(torch.tensor(1.0)).item() == pytest.approx(2.0)
    s = sample_sigmas(200_000, p_mean=0.7, p_std=1.6, generator=torch.Generator().manual_seed(0))
    assert s.log().mean().item() == pytest.approx(0.7, abs=0.02)
    assert s.log().std().item() == pytest.approx(1.6, abs=0.02)


def test_loss_of_the_optimal_denoiser_is_below_any_other():
    """For x0 ~ N(0, a^2) the optimal D is a^2/(a^2+s^2) x; a scaled version must lose."""
    g = torch.Generator().manual_seed(0)
    a, x0 = 0.8, 0.8 * torch.randn(4096, 4, generator=g)
    sigma = torch.full((4096,), 0.7)
    noise = torch.randn(x0.shape, generator=g)

    def optimal(x, s, k=1.0):
        return k * a**2 / (a**2 + s[:, None] ** 2) * x

    best = edm_loss(optimal, x0, sigma, noise).mean()
    worse = edm_loss(lambda x, s: optimal(x, s, 1.2), x0, sigma, noise).mean()
    assert best < worse


def test_euler_sampler_recovers_gaussian_data_scale():
    # Euler is first order: many steps make its discretisation error small next to the tolerance.
    a = 0.5

    def denoise(x, sigma, conditional):
        s = sigma.double().view(-1, 1, 1, 1, 1)
        return (a**2 / (a**2 + s**2) * x.double()).float()

    x = euler_sample(
        denoise, (256, 2, 1, 4, 4), steps=400, guidance=(1.0, 1.0), generator=torch.Generator().manual_seed(0)
    )
    assert x.std().item() == pytest.approx(a, rel=0.05)


def test_guidance_rises_linearly_over_frames_and_uses_the_unconditional_branch():
    w = frame_guidance(5, (1.0, 3.0))
    torch.testing.assert_close(w, torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0], dtype=torch.float64))
    calls = []

    def denoise(x, sigma, conditional):
        calls.append(conditional)
        return torch.zeros_like(x) if conditional else torch.ones_like(x)

    euler_sample(denoise, (1, 3, 1, 2, 2), steps=2, guidance=(1.0, 2.0))
    assert calls.count(False) == calls.count(True) == 2


def test_karras_sigmas_span_the_configured_range():
    s = karras_sigmas(25)
    assert s[0].item() == pytest.approx(700.0) and s[-2].item() == pytest.approx(0.002) and s[-1] == 0
    assert torch.all(s[:-1] > s[1:])
