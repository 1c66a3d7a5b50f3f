"""Evaluate a video model on held-out clips (paper App. E, the parts that need no external weights):

1. EDM validation loss at fixed sigmas with fixed noise;
2. samples from the Euler sampler with per-frame linear guidance, written as mp4;
3. motion control: Spearman correlation between the requested motion bucket and the motion score
   the curation scorer measures on the generated video, per conditioning image, averaged;
4. temporal consistency (flow-warping error) of every sample and, for image-to-video, the first
   frame's PSNR and SSIM against the conditioning frame (svd.evaluate.quality);
5. FVD of the samples against held-out clips, when evaluate.fvd_model names an I3D TorchScript
   (svd.evaluate.fvd); otherwise metrics.json says why it was not computed.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from svd.curation.scorers.motion import MotionParams, motion_score
from svd.data.clips import load_subset
from svd.evaluate import fvd, quality
from svd.generate import image_to_video, text_to_video
from svd.media.io import write_video
from svd.model import components
from svd.model.denoiser import validation_loss
from svd.params import Params

log = logging.getLogger("svd.evaluate")
SEED = 1234


def spearman(x: list[float], y: list[float]) -> float | None:
    """Rank correlation; None where it is undefined (a constant series)."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def fvd_skipped(model: str | None, frames: int) -> str | None:
    """Why FVD cannot be computed, or None when it can."""
    if not model:
        return "not computed: evaluate.fvd_model names no I3D TorchScript"
    if frames < fvd.FRAMES:
        return f"not computed: the samples have {frames} frames, the FVD protocol takes {fvd.FRAMES}"
    return None


def evaluate(p: Params, model_dir: Path, subsets_dir: Path, curated_dir: str | Path) -> dict:
    e, st = p.evaluate, p.train.finetune.schedule()[-1]  # the model as its last phase left it
    out = Path(e.out)
    shutil.rmtree(out / "samples", ignore_errors=True)  # no sample of an earlier run may stay among these
    (out / "samples").mkdir(parents=True)
    c = components.load(model_dir)
    motion = p.curate.scorers.get("motion") or MotionParams()  # the curation's flow settings
    val = load_subset(subsets_dir, curated_dir, e.subset, "val", e.fps, st.frames, st.resolution)

    # 1. Validation loss at fixed sigmas
    condition = p.train.finetune.condition
    losses = validation_loss(c, val.fixed(max(len(val), 2)), p.conditioning, e.sigmas, SEED, condition)
    metrics: dict = {"val_loss": sum(losses.values()) / len(losses)}
    metrics |= {f"val_loss_sigma_{s:g}": v for s, v in losses.items()}

    # 2. Samples: each held-out first frame at every requested motion bucket
    rows: list[dict] = []
    generated: list[tuple[str, np.ndarray]] = []
    for i in range(e.samples):
        clip, key = val.window(i % len(val), 0.0), val.keys[i % len(val)]
        if condition == "image":  # the conditioning frame beside its videos, for `svd generate`
            Image.fromarray(clip[0]).save(out / "samples" / f"{key}.png")
        for bucket in e.motion_buckets:
            args = (st.frames, e.fps, bucket, e.steps, e.guidance, SEED + i)
            if condition == "text":  # a text-to-video model: the clip's caption instead of its frame
                caption = val.caption(i % len(val), 0.0)
                (out / "samples" / f"{key}.txt").write_text(caption)  # the prompt, for the arena
                video = text_to_video(c, caption, *args, size=st.resolution)
            else:
                video = image_to_video(c, clip[0], *args, size=st.resolution)
            path = out / "samples" / f"{key}_m{bucket:03d}.mp4"
            write_video(path, video, e.fps)
            generated.append((path.name, video))
            row = {"sample": path.name, "bucket": bucket, "motion": motion_score(video, e.fps, motion)}
            row["warping_error"] = quality.warping_error(video)
            if condition == "image":
                row |= {"psnr": quality.psnr(video[0], clip[0]), "ssim": quality.ssim(video[0], clip[0])}
            rows.append(row)
            log.info("sample %s: bucket %d -> motion %.3f", path.name, bucket, rows[-1]["motion"])

    # 3. Motion control, ranked within each conditioning image: how much a picture moves differs
    #    far more between images than between buckets, and would swamp a pooled correlation
    per_image = [
        spearman([r["bucket"] for r in group], [r["motion"] for r in group])
        for group in (rows[i : i + len(e.motion_buckets)] for i in range(0, len(rows), len(e.motion_buckets)))
    ]
    defined = [r for r in per_image if r is not None]
    rho = sum(defined) / len(defined) if defined else None
    metrics["motion_spearman"] = rho
    metrics["samples"] = len(rows)
    metrics["temporal_warping_error"] = float(np.mean([r["warping_error"] for r in rows]))
    if condition == "image":  # a first frame equal to its conditioning frame (PSNR inf) is left out
        finite = [r["psnr"] for r in rows if np.isfinite(r["psnr"])]
        metrics["first_frame_psnr"] = float(np.mean(finite)) if finite else None
        metrics["first_frame_ssim"] = float(np.mean([r["ssim"] for r in rows]))

    # 5. FVD, when a feature network is configured and the samples are long enough for its protocol
    metrics["fvd"], metrics["fvd_note"] = None, fvd_skipped(e.fvd_model, st.frames)
    if metrics["fvd_note"] is None:
        assert e.fvd_model is not None
        real = load_subset(subsets_dir, curated_dir, e.subset, "val", e.fps, fvd.FRAMES, st.resolution)
        clips = [(real.name(i), real.window(i, 0.0)) for i in range(len(real))]
        metrics["fvd"] = fvd.fvd(e.fvd_model, clips, generated)
        metrics["fvd_note"] = f"{len(clips)} held-out clips against {len(generated)} samples"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    pd.DataFrame(rows).to_csv(out / "samples.csv", index=False)
    log.info("evaluation: val_loss %.4f, motion spearman %s", metrics["val_loss"], rho)
    return metrics
