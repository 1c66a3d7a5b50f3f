"""Issue 8, acceptance point 7 (the GPU half): the learned scorers' cost per clip at their real sizes
on a CUDA GPU, batched across a video's clips as curation runs them, against one CPU thread (the
default) on a few clips. bench/curation.py prints this when a GPU is present; on a GPU machine
without a video decoder, run this file alone.

- aesthetics: CLIP ViT-L/14 and LAION's head, first, middle and last frame, with a caption each;
- fingerprint: CLIP ViT-L/14 on the middle frame;
- TransNetV2 (the weights its wheel ships), per frame of the decode pass;
- the three captioners (`--only captioners` runs them alone): GIT-large on the middle frame, GIT-large
  on 6 frames stacked (VATEX), and an LLM at Qwen2.5-0.5B's sizes summarising both, 40 new tokens
  each, greedy, 16 clips a generate call.

CLIP's, GIT's and the LLM's weights are random (no download here): their cost does not depend on
their values, and the captioners are told never to stop early, so each caption is 40 tokens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from svd.curation.models import one_torch_thread  # noqa: E402
from svd.curation.scorers.aesthetics import Aesthetics, AestheticsParams  # noqa: E402
from svd.curation.scorers.base import ClipFrames, Device  # noqa: E402
from svd.curation.scorers.captioners import CaptionersParams, describe, summarise  # noqa: E402
from svd.curation.scorers.fingerprint import Fingerprint, FingerprintParams  # noqa: E402
from svd.curation.tiny_models import save_random_captioner, save_random_clip, save_random_llm  # noqa: E402
from svd.curation.transnet import SIZE, LearnedCuts  # noqa: E402

CLIPS, CPU_CLIPS, FRAMES = 128, 2, 2000


def clips(n: int, picks: int, rng: np.random.Generator) -> list[ClipFrames]:
    """Frames with structure (blurred noise at 224x398, a 16:9 video's picks), one caption each."""
    base = rng.integers(0, 255, (n * picks, 28, 50, 3), dtype=np.uint8)
    frames = [np.repeat(np.repeat(f, 8, 0), 8, 1)[:224, :398] for f in base]
    return [ClipFrames(frames[i * picks : (i + 1) * picks], 24.0, 1280, 720, f"clip {i}") for i in range(n)]


def per_clip_ms(scorer: Aesthetics | Fingerprint, batch: list[ClipFrames], device: str) -> float:
    scorer.score_many(batch[:2])  # the model's one-off load stays untimed
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    sync()
    t0 = time.perf_counter()
    scorer.score_many(batch)
    sync()
    return (time.perf_counter() - t0) / len(batch) * 1000


def transnet_ms(device: str, frames: int, rng: np.random.Generator) -> float:
    """Per frame, frames already at the network's size (the decode pass resizes them)."""
    video = rng.integers(0, 255, (frames, SIZE[1], SIZE[0], 3), dtype=np.uint8)
    LearnedCuts(device=device).push(video[0])  # loads the network
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    t0 = time.perf_counter()
    cuts = LearnedCuts(device=device)
    for f in video:
        cuts.push(f)
    cuts.probabilities()
    sync()
    return (time.perf_counter() - t0) / frames * 1000


def captioners(rng: np.random.Generator) -> list[str]:
    """ms a clip for each captioner, on the GPU over 64 clips and on one CPU thread over 1."""
    p = CaptionersParams()
    lines = [
        "captioners at real sizes (GIT-large image, GIT-large VATEX on 6 frames, LLM at Qwen2.5-0.5B's"
        f" sizes), {p.max_new_tokens} tokens each, {p.batch} clips a call, fp32; CPU is one thread",
        f"  {'device':<6} {'clips':>5} {'image ms':>10} {'video ms':>10} {'summary ms':>10}  (a clip)",
    ]
    frames = clips(64, 1 + p.video_frames, rng)
    image, video = [c.frames[:1] for c in frames], [c.frames[1:] for c in frames]
    pairs: list[tuple[str | None, str | None]] = [(f"clip {i}", f"in clip {i}") for i in range(64)]
    with tempfile.TemporaryDirectory(prefix="svd-bench-captioners-") as name:
        tmp = Path(name)
        git = save_random_captioner(tmp / "image", large=True)
        vatex = save_random_captioner(tmp / "video", frames=p.video_frames, large=True)
        lm = save_random_llm(tmp / "summary", large=True)
        for device, n in (("cuda", len(frames)), ("cpu", 1)):
            sync = torch.cuda.synchronize if device == "cuda" else lambda: None
            calls: dict[str, Callable[[int], object]] = {  # called within this iteration
                "image": lambda k: describe(git, device, image[:k], p),  # noqa: B023
                "video": lambda k: describe(vatex, device, video[:k], p, stacked=True),  # noqa: B023
                "summary": lambda k: summarise(lm, device, pairs[:k], p),  # noqa: B023
            }
            ms = {}
            with one_torch_thread():
                for what, call in calls.items():
                    call(1)  # the model's one-off load stays untimed
                    sync()
                    t0 = time.perf_counter()
                    call(n)
                    sync()
                    ms[what] = (time.perf_counter() - t0) / n * 1000
            lines.append(f"  {device:<6} {n:>5} " + " ".join(f"{v:>10.1f}" for v in ms.values()))
    return lines


def main(only: str | None = None) -> list[str]:
    if not torch.cuda.is_available():
        return [
            "learned scorers at real sizes: no CUDA GPU on this machine (run bench/learned_gpu.py on one)"
        ]
    rng = np.random.default_rng(0)
    if only == "captioners":
        return captioners(rng)
    three, one = clips(CLIPS, 3, rng), clips(CLIPS, 1, rng)
    with tempfile.TemporaryDirectory(prefix="svd-bench-clip-") as tmp:
        model, head = save_random_clip(Path(tmp), vit_l=True)
        rows = []
        runs: tuple[tuple[Device, int], ...] = (("cuda", CLIPS), ("cpu", CPU_CLIPS))
        for device, n in runs:
            a = Aesthetics(AestheticsParams(model=model, head=head, device=device))
            f = Fingerprint(FingerprintParams(model=model, device=device))
            frames = FRAMES if device == "cuda" else FRAMES // 10
            rows.append(
                (
                    device,
                    n,
                    per_clip_ms(a, three[:n], device),
                    per_clip_ms(f, one[:n], device),
                    transnet_ms(device, frames, rng),
                )
            )
    return [
        f"learned scorers at real sizes on {torch.cuda.get_device_name()}: CLIP ViT-L/14 batched 64 frames"
        " a pass; CPU is one thread, as curation pins it",
        f"  {'device':<6} {'clips':>5} {'aesthetics ms/clip':>19} {'fingerprint ms/clip':>20}"
        f" {'TransNetV2 ms/frame':>20}",
        *(f"  {d:<6} {n:>5} {a:>19.2f} {f:>20.2f} {t:>20.3f}" for d, n, a, f, t in rows),
        *captioners(rng),
    ]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["captioners"], help="the captioners alone")
    print("\n".join(main(ap.parse_args().only)))
