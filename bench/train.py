"""Issue 6, acceptance point 11 (the CPU half): what a Stage II training step costs, measured in one run.

1. The step against a bare UNet forward/backward on the same shapes: the ratio is the loop's own
   overhead (VAE encoding, CLIP embedding, conditioning built per step), what a latent store would
   remove.
2. The share of the step spent waiting for data when clips stream from the shards, decoded inline
   (data_workers 0) or by 2 DataLoader workers. Goal: under 5%.

On the tiny preset and a freshly curated 4-video synthetic corpus. Not here yet: the latent store's
speed-up and the GPU figures (the `svd` preset's step time, peak memory and MFU on an H100).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from svd.curation.curate import curate  # noqa: E402
from svd.curation.filter import make_subsets, write_subsets  # noqa: E402
from svd.data.clips import Batch, batches, load_subset  # noqa: E402
from svd.diffusion.edm import edm_loss, sample_sigmas  # noqa: E402
from svd.media.synth import make_corpus  # noqa: E402
from svd.model import components  # noqa: E402
from svd.model.denoiser import denoiser, prepare  # noqa: E402
from svd.model.inflate import inflate  # noqa: E402
from svd.params import Params, load  # noqa: E402

STEPS = 20


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def overhead(p: Params, repeats: int = 5) -> dict[str, float]:
    """Full training step against the bare UNet on one fixed batch."""
    st = p.train.video
    c = components.build(p.model.arch, st.resolution[0])
    c.unet = inflate(c.unet, p.model.arch.unet.addition_time_embed_dim, st.frames)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (st.batch_size, st.frames, 3, *st.resolution), dtype=np.uint8)
    batch = Batch(
        torch.from_numpy(pixels).float() / 127.5 - 1,
        torch.full((st.batch_size,), float(st.fps)),
        torch.linspace(0, 8, st.batch_size),
    )
    d, g = denoiser(c), torch.Generator().manual_seed(0)

    def full_step() -> None:
        x0, cond = prepare(c, batch, p.conditioning, st.cond_drop, g)
        edm_loss(d, x0, sample_sigmas(st.batch_size, st.p_mean, st.p_std, g), **cond).mean().backward()

    x0, cond = prepare(c, batch, p.conditioning, 0.0, g)

    def bare_step() -> None:
        x_in = torch.cat([x0, cond["concat"]], dim=2)
        c.unet(
            x_in, torch.zeros(st.batch_size), cond["encoder_hidden_states"], cond["added_time_ids"]
        ).sample.mean().backward()

    bare, full = timed(bare_step, repeats), timed(full_step, repeats)
    return {"bare_unet_s": bare, "training_step_s": full, "ratio": full / bare}


def data_wait(p: Params, workers: int) -> tuple[float, float]:
    """(seconds per step, share of it spent waiting for the next batch) over STEPS streamed steps."""
    st = p.train.video
    train = load_subset(p.filter.out, p.curate.out, st.subset, "train", st.fps, st.frames, st.resolution)
    c = components.build(p.model.arch, st.resolution[0])
    c.unet = inflate(c.unet, p.model.arch.unet.addition_time_embed_dim, st.frames)
    d, g = denoiser(c), torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(c.unet.parameters(), lr=st.lr)
    it = batches(train, p.seed, "bench", 0, STEPS + 1, st.batch_size, slice(None), workers)
    next(it)  # workers started and the first batch in: start-up is not a step
    waited, t0 = 0.0, time.perf_counter()
    for _ in range(STEPS):
        w = time.perf_counter()
        batch = next(it)
        waited += time.perf_counter() - w
        x0, cond = prepare(c, batch, p.conditioning, st.cond_drop, g)
        loss = edm_loss(d, x0, sample_sigmas(st.batch_size, st.p_mean, st.p_std, g), **cond).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    total = time.perf_counter() - t0
    return total / STEPS, waited / total


def main() -> str:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="svd-bench-train-") as name:
        tmp = Path(name)
        paths = {
            "synth": {"out": str(tmp / "raw"), "videos": 4},
            "curate": {"sources": [str(tmp / "raw")], "out": str(tmp / "curated"), "cache": str(tmp / "c")},
            "filter": {"out": str(tmp / "subsets")},
        }
        p = load(ROOT / "params.yaml", paths)
        make_corpus(p.synth, p.seed)
        write_subsets(make_subsets(curate(p.curate, p.seed), p.filter), p.filter.out)
        r = overhead(p)
        waits = {w: data_wait(p, w) for w in (0, 2)}
    st = p.train.video
    shape = f"{st.batch_size} x {st.frames} x {st.resolution[0]}x{st.resolution[1]}"
    full, bare = r["training_step_s"] * 1000, r["bare_unet_s"] * 1000
    lines = [
        f"training step, Stage II tiny ({shape}, {torch.get_num_threads()} torch threads)",
        f"  full step {full:.0f} ms, bare UNet fwd+bwd {bare:.0f} ms"
        f" -> loop overhead {r['ratio']:.2f}x (what a latent store would remove)",
        *(
            f"  streamed from the shards, data_workers {w}: {s * 1000:.0f} ms a step,"
            f" {share:.1%} waiting for data   goal < 5%: {'met' if share < 0.05 else 'NOT met'}"
            for w, (s, share) in waits.items()
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
