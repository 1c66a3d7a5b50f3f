"""Issue 6, acceptance point 11 (the CPU half): what a Stage II training step costs, measured in one run.

1. The image-to-video step against a bare UNet forward/backward on the same shapes: the ratio is
   what the encoders and the conditioning add to a step, the most a latent store can remove.
2. Steps streamed from the shards, encoding each batch or reading the latent store, decoded inline
   (data_workers 0) or by 2 DataLoader workers, for the text-to-video base model (the default
   Stage II) and for image-to-video: time a step and the share of it spent waiting for data.
   Goals: data wait under 5%; the store at least 3x faster.

On the tiny preset and a freshly curated 4-video synthetic corpus. Then, counted on the meta device,
the most a latent store can save on the `svd` preset: the bound the 3x goal meets.

3. On a GPU (`--only gpu` runs this part alone, with no video decoder installed): the `svd`
   preset's Stage II step on latents, as a latent store serves them (UNet forward and backward,
   gradient clipping, fused AdamW), at 14 x 320 x 576 in bf16 with gradient checkpointing and SDPA:
   checkpointing every layer at 8 and 12 clips, then each layer compiled (train.compute.compile) at 8,
   one compiled step profiled by kind of kernel, checkpointing the attention layers alone
   (train.compute.checkpoint_layers) at 4 and 2, compiled at 12, and compiled for fixed sizes at 8:
   step time, peak memory, MFU, and the seconds the first step spent compiling.
   (diffusers' own checkpointing, the baseline, is in bench/gpu-notes.md: 1.1x to 1.3x faster than
   every layer at 2 clips in two sessions, at 24 GiB more, and out of memory at 8.) MFU counts the
   model's FLOPs (forward x 3, counted by torch's FlopCounterMode; the checkpointing's recomputation
   is not useful work) against the card's dense bf16 peak (989 TFLOP/s on an H100 SXM or H200).
   Goal: MFU >= 40%.
4. FSDP2 (`--only fsdp`, under torchrun): the same step sharded over every GPU of the machine, then
   the whole state gathered to rank 0.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from svd.diffusion.edm import edm_loss, sample_sigmas  # noqa: E402
from svd.model import components  # noqa: E402
from svd.model.denoiser import denoiser, prepare  # noqa: E402
from svd.model.inflate import inflate  # noqa: E402
from svd.model.motion import MotionBuckets  # noqa: E402
from svd.params import Architecture, ComputeParams, Condition, Params, load  # noqa: E402
from svd.train import compute, distributed  # noqa: E402

STEPS = 20
DENSE_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # datasheet TFLOP/s, no sparsity


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def overhead(p: Params, repeats: int = 5) -> dict[str, float]:
    """Full training step against the bare UNet on one fixed batch."""
    from svd.data.clips import Batch

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
    c.motion = MotionBuckets.from_scores(np.linspace(0, 8, 100))
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


def store_bound(arch: Architecture, frames: int = 14, size: tuple[int, int] = (320, 576)) -> list[str]:
    """What a latent store can save on the `svd` preset, by FLOPs counted on the meta device (no
    weights): a step keeps the UNet's forward and backward and the conditioning frame's encoding, and
    drops the other frames' encoding and the CLIP embedding."""
    from svd.model.conditioning import clip_embed, posterior

    def flops(fn, *args, **kwargs) -> float:
        with FlopCounterMode(display=False) as fc:
            fn(*args, **kwargs)
        return float(fc.get_total_flops())

    with torch.device("meta"), torch.no_grad():
        c = components.build(arch, size[0])
        c.unet = inflate(c.unet, arch.unet.addition_time_embed_dim, frames).to("meta")  # a buffer made on CPU
        h, w = (s // components.downscale(arch.vae.block_out_channels) for s in size)
        x = torch.zeros(frames, 3, *size)
        z = torch.zeros(1, frames, arch.vae.latent_channels, h, w)
        cond = dict(concat=z, encoder_hidden_states=torch.zeros(1, 1, 1024), added_time_ids=torch.zeros(1, 3))
        unet = 3 * flops(denoiser(c), z, torch.ones(1), **cond)
        vae, clip = flops(posterior, c.vae, x), flops(clip_embed, c, x[:1])
    full, stored = unet + vae + clip, unet + vae / frames
    return [
        f"svd preset, one clip of {frames} x {size[0]}x{size[1]}: UNet fwd+bwd {unet / 1e12:.1f} TFLOP,"
        f" VAE encoder {vae / 1e12:.1f} ({frames} frames), CLIP {clip / 1e12:.2f}",
        f"  a latent store removes at most {full / stored:.2f}x of a step's FLOPs",
    ]


def streamed(p: Params, condition: Condition, workers: int, store: str | None) -> tuple[float, float]:
    """(seconds per step, share of it spent waiting for the next batch) over STEPS steps streamed
    from the shards: clips encoded as the step needs them, or read from the latent store `store`
    (filled first, untimed: a store is filled once and read by every later step and run)."""
    from svd.data.clips import batches, load_subset
    from svd.data.latents import LatentWindows, encoders_hash, fill, text_hash

    st = p.train.video
    train = load_subset(p.filter.out, p.curate.out, st.subset, "train", st.fps, st.frames, st.resolution)
    torch.manual_seed(0)  # the same networks in every call: the store's entries fit all of them
    c = components.build(p.model.arch, st.resolution[0])
    text = condition == "text"
    c.unet = inflate(c.unet, p.model.arch.unet.addition_time_embed_dim, st.frames, concat=not text)
    c.motion = MotionBuckets.from_scores(train.motion)
    if store is not None:
        fill(train, c, store, text)
        train = LatentWindows(train, store, encoders_hash(c), text_hash(c) if text else None)
    d, g = denoiser(c), torch.Generator().manual_seed(0)
    opt = compute.optimizer(list(c.unet.parameters()), st.lr)
    it = batches(train, p.seed, "bench", 0, STEPS + 1, st.batch_size, slice(None), workers)
    next(it)  # workers started and the first batch in: start-up is not a step
    waited, t0 = 0.0, time.perf_counter()
    for _ in range(STEPS):
        w = time.perf_counter()
        batch = next(it)
        waited += time.perf_counter() - w
        x0, cond = prepare(c, batch, p.conditioning, st.cond_drop, g, condition=condition)
        loss = edm_loss(d, x0, sample_sigmas(st.batch_size, st.p_mean, st.p_std, g), **cond).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    total = time.perf_counter() - t0
    return total / STEPS, waited / total


def latent_step(
    arch: Architecture,
    cp: ComputeParams,
    batch: int,
    frames: int,
    size: tuple[int, int],
    repeats: int,
    profile: bool = False,
    static: bool = False,
    fsdp: bool = False,
) -> dict[str, Any]:
    """A Stage II step on latents at (batch, frames, *size): seconds, peak bytes, model FLOPs, and
    with `profile` the GPU time of one step by kind of kernel. `static` compiles the layers for
    fixed sizes (`dynamic=False`) instead of letting dynamo generalise them. `fsdp` shards
    the UNet over the ranks as train.compute.parallel: fsdp does, and after the steps gathers its
    whole state to rank 0's CPU, as a resume point does: `gather_seconds`, `gathered_parameters`."""
    dev = compute.device(cp)
    with torch.device(dev):  # 1.5 B parameters: initialised where they will live
        c = components.build(arch, size[0])
        c.unet = inflate(c.unet, arch.unet.addition_time_embed_dim, frames)
    if static:
        torch._dynamo.reset()  # or the graphs compiled for any size answer again
    fixed = functools.partial(torch.compile, dynamic=False)
    with mock.patch.object(torch, "compile", fixed) if static else contextlib.nullcontext():
        compute.prepare_networks(c, cp)
    if fsdp:
        distributed.shard(c.unet, compute.blocks(c.unet))
    d = denoiser(c)
    params = list(c.unet.parameters())
    opt = compute.optimizer(params, 1e-5)
    h, w = (s // components.downscale(arch.vae.block_out_channels) for s in size)
    k = arch.vae.latent_channels
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, frames, k, h, w, generator=g).to(dev)
    cond = dict(
        concat=torch.randn(batch, 1, k, h, w, generator=g).expand(-1, frames, -1, -1, -1).to(dev),
        encoder_hidden_states=torch.randn(batch, 1, arch.unet.cross_attention_dim, generator=g).to(dev),
        added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]).expand(batch, -1).to(dev),
    )

    def step() -> None:
        with compute.autocast(cp, dev):
            sigma = sample_sigmas(batch, 0.7, 1.6, g).to(dev)
            loss = edm_loss(d, x0, sigma, torch.randn(x0.shape, generator=g).to(dev), **cond).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    eager = torch.compiler.set_stance("force_eager")  # compiled kernels hide their FLOPs from the counter
    with eager, torch.no_grad(), compute.autocast(cp, dev), FlopCounterMode(display=False) as fc:
        d(x0, torch.ones(batch, device=dev), **cond)
    sync = torch.cuda.synchronize if dev.type == "cuda" else lambda: None
    t0 = time.perf_counter()
    step()  # warm-up: kernels chosen, allocator grown, layers compiled
    sync()
    first = time.perf_counter() - t0
    step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / repeats
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else float("nan")
    out: dict[str, Any] = {
        "seconds": seconds,
        "first_seconds": first,
        "peak_bytes": peak,
        "flops": 3.0 * fc.get_total_flops(),
    }
    if profile:
        out["kernels"] = kernel_time(step)
    if fsdp:
        t0 = time.perf_counter()
        state = distributed.full_state(c.unet)
        out["gather_seconds"] = time.perf_counter() - t0
        out["gathered_parameters"] = sum(t.numel() for t in state.values())
    return out


KINDS = {  # kernel name fragments -> kind, first match wins
    "attention": ("flash", "fmha", "attention", "sdpa"),
    "optimizer": ("adam", "multi_tensor", "foreach"),
    "matmul and conv": ("gemm", "conv", "xmma", "cutlass", "nvjet", "wgrad", "dgrad", "fprop", "cudnn"),
    "norm": ("norm",),
    "copy and layout": ("copy", "transpose", "cat", "permute", "contiguous"),
}


def kernel_time(step: Callable[[], None]) -> dict[str, float]:
    """GPU seconds of one step by kind of kernel, and the step's wall time: their gap is the GPU
    waiting on the host (launch-bound)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kinds: dict[str, float] = dict.fromkeys([*KINDS, "other elementwise"], 0.0)
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", 0.0)
        if e.device_type != torch.autograd.DeviceType.CUDA or not us:
            continue
        name = e.key.lower()
        kind = next((k for k, frags in KINDS.items() if any(f in name for f in frags)), "other elementwise")
        kinds[kind] += us / 1e6
    return kinds | {"wall": wall}


def matmul_rate(n: int = 8192, repeats: int = 20) -> float:
    """What this card's bf16 matrix units deliver on a large product: the practical ceiling."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def gpu(p: Params, frames: int = 14) -> list[str]:
    """Variants of the `svd` preset's step, each line printed as it lands, the compiled ones last (the
    first compiles for minutes): a run cut short by its time limit keeps what it measured."""
    if not torch.cuda.is_available():
        return ["GPU figures: no CUDA GPU on this machine (run `bench/train.py --only gpu` on one)"]
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in DENSE_BF16_PEAK.items() if k in name), float("nan"))
    size = (320, 576)
    base = ComputeParams(device="cuda", precision="bf16", gradient_checkpointing=True, attention="sdpa")
    lines = [
        f"svd preset, Stage II step on latents, {frames} x {size[0]}x{size[1]}, bf16, SDPA, on {name}"
        f" (bf16 matmul 8192^3: {matmul_rate() / 1e12:.0f} TFLOP/s; MFU against {peak / 1e12:.0f})",
        f"  {'variant':<52} {'batch':>5} {'step s':>7} {'clips/s':>8} {'peak GiB':>9}"
        f" {'TFLOP/s':>8} {'MFU':>6} {'first step s':>12}",
    ]
    print(*lines, sep="\n", flush=True)
    ours, compiled = "checkpointing (every layer)", base.model_copy(update={"compile": True})
    attention = compiled.model_copy(update={"checkpoint_layers": "attention"})
    # (label, params, batch, extra arguments)
    variants: list[tuple[str, ComputeParams, int, dict[str, bool]]] = [  # the compiled ones last
        *((ours, base, b, {}) for b in (8, 12)),
        (ours + " + compile", compiled, 8, {}),
        (ours + " + compile, profiled", compiled, 8, {"profile": True}),
        *(("checkpointing attention + compile", attention, b, {}) for b in (4, 2)),
        (ours + " + compile", compiled, 12, {}),
        (ours + " + compile, fixed sizes", compiled, 8, {"static": True}),  # compiles all again
    ]
    for label, cp, b, extra in variants:
        gc.collect()
        torch.cuda.empty_cache()
        try:
            repeats = 2 if extra.get("profile") else 5
            r = latent_step(p.model.presets["svd"], cp, b, frames, size, repeats, **extra)
        except Exception as e:  # out of memory, or a compiler failure: the row says which
            lines.append(f"  {label:<52} {b:>5} failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
            print(lines[-1], flush=True)
            continue
        rate = r["flops"] / r["seconds"]
        lines.append(
            f"  {label:<52} {b:>5} {r['seconds']:>7.3f} {b / r['seconds']:>8.2f}"
            f" {r['peak_bytes'] / 2**30:>9.1f} {rate / 1e12:>8.0f} {rate / peak:>6.1%}"
            f" {r['first_seconds']:>12.1f}"
        )
        if "kernels" in r:
            k = r["kernels"]
            busy = sum(v for n, v in k.items() if n != "wall")
            lines.append(
                f"    one step's GPU time by kernel kind (wall {k['wall']:.3f} s,"
                f" GPU busy {busy / k['wall']:.0%}): "
                + ", ".join(f"{n} {v / busy:.0%}" for n, v in k.items() if n != "wall")
            )
        print(*lines[-1 - ("kernels" in r) :], sep="\n", flush=True)
    return lines


def fsdp(p: Params, frames: int = 14, batch: int = 8) -> list[str]:
    """The `svd` preset's step sharded by FSDP2 over every GPU of the machine, each rank `batch`
    clips, then the whole state gathered to rank 0 (run under torchrun: `torchrun --standalone
    --nproc-per-node gpu bench/train.py --only fsdp`). On one GPU nothing is split, but the CUDA path
    runs: NCCL, the sharded parameters under fused AdamW, autocast and checkpointing, the gather."""
    if not torch.cuda.is_available():
        return ["FSDP figures: no CUDA GPU on this machine"]
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    size = (320, 576)
    cp = ComputeParams(
        device="cuda", precision="bf16", gradient_checkpointing=True, attention="sdpa", parallel="fsdp"
    )
    r = latent_step(p.model.presets["svd"], cp, batch, frames, size, 5, fsdp=True)
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    peak = next((v for k, v in DENSE_BF16_PEAK.items() if k in torch.cuda.get_device_name()), float("nan"))
    rate = r["flops"] / r["seconds"]
    main = distributed.is_main()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if not main:
        return []
    return [
        f"FSDP2 over {ranks} GPU(s), svd preset, {batch} clips a rank of {frames} x {size[0]}x{size[1]},"
        f" bf16, checkpointing every layer: {r['seconds']:.3f} s a step, peak {r['peak_bytes'] / 2**30:.1f}"
        f" GiB a rank, {rate / 1e12:.0f} TFLOP/s a rank, MFU {rate / peak:.1%}; whole state gathered to"
        f" rank 0 in {r['gather_seconds']:.1f} s ({r['gathered_parameters'] / 1e9:.3f} B parameters)"
    ]


def cpu() -> list[str]:
    from svd.curation.curate import curate
    from svd.curation.filter import make_subsets, write_subsets
    from svd.media.synth import make_corpus

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
        runs = {
            (m, w, s): streamed(p, m, w, str(tmp / "latents") if s else None)
            for m in ("text", "image")
            for s in (False, True)
            for w in (0, 2)
        }
    st = p.train.video
    shape = f"{st.batch_size} x {st.frames} x {st.resolution[0]}x{st.resolution[1]}"
    full, bare = r["training_step_s"] * 1000, r["bare_unet_s"] * 1000
    lines = [
        f"training step, Stage II tiny ({shape}, {torch.get_num_threads()} torch threads)",
        f"  image-to-video: full step {full:.0f} ms, bare UNet fwd+bwd {bare:.0f} ms on one fixed batch"
        f" -> encoders and conditioning add {r['ratio']:.2f}x (the most a latent store can remove)",
    ]
    for m in ("text", "image"):
        speedup = runs[(m, 0, False)][0] / runs[(m, 0, True)][0]
        lines += [
            *(
                f"  {m}-to-video, streamed, {'from the latent store' if s else 'encoding each batch'},"
                f" data_workers {w}: {t * 1000:.0f} ms a step, {share:.1%} waiting for data"
                f"   goal < 5%: {'met' if share < 0.05 else 'NOT met'}"
                for (mode, w, s), (t, share) in runs.items()
                if mode == m
            ),
            f"  {m}-to-video, latent store: steps {speedup:.2f}x faster (data_workers 0)"
            f"   goal >= 3x: {'met' if speedup >= 3 else 'NOT met'}",
        ]
    return lines


def main(only: str | None = None) -> str:
    p = load(ROOT / "params.yaml")
    if only == "fsdp":
        return "\n".join(fsdp(p))
    lines = [] if only == "gpu" else cpu() + store_bound(p.model.presets["svd"])
    return "\n".join(lines + ([] if only == "cpu" else gpu(p)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        choices=["cpu", "gpu", "fsdp"],
        help="one part: gpu and fsdp (under torchrun) need no video decoder installed",
    )
    out = main(ap.parse_args().only)
    if out:  # under torchrun, rank 0 alone has lines
        print(out)
