"""Clip table -> the training subsets LVD, LVD-F and HQ (paper Sec. 3.1, App. E.2.2).

    lvd    every clip that was annotated (status "ok")
    lvd_f  the paper's filters: drop the `motion_drop_fraction` least-moving clips, a percentile of
           the annotated set recomputed per dataset, and every clip whose text covers more than
           `max_text_area` of the frame
    hq     the Stage III cut of lvd_f: a higher motion percentile (again of the annotated set, so
           thresholds of both subsets are on one scale), less text, a minimum length

Left out, because they need weights this project cannot download: the LAION aesthetic predictor and
CLIP image-text similarity (the paper drops the 25% least aesthetic and 50% least similar clips).
They slot in as two more score columns and two more percentile lines here.

Every subset has a `split` column: "val" when a hash of the clip key falls under `val_fraction`, so
a clip is held out in every subset or in none, and evaluation never sees a clip that trained an
earlier stage. Each subset of two or more clips gets at least one of each (val_fraction > 0): the
clip with the lowest hash is promoted to val, or the highest demoted to train, in every subset.
The thresholds applied are kept in each subset's `attrs` (they survive Parquet) for the checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from svd.params import FilterParams

SUBSETS = ("lvd", "lvd_f", "hq")


def split_hash(clip: str) -> float:
    """Uniform in [0, 1), a pure function of the key: the same on every machine and every run."""
    return int(hashlib.sha256(clip.encode()).hexdigest()[:15], 16) / 16**15


def motion_threshold(annotated: pd.DataFrame, drop_fraction: float) -> float:
    if annotated.empty:
        return float("nan")
    return float(np.quantile(annotated["motion_score"].to_numpy(float), drop_fraction))


def make_subsets(table: pd.DataFrame, p: FilterParams) -> dict[str, pd.DataFrame]:
    lvd = table[table["status"] == "ok"].reset_index(drop=True)
    t_f = motion_threshold(lvd, p.motion_drop_fraction)
    t_hq = motion_threshold(lvd, p.hq.motion_drop_fraction)
    lvd_f = lvd[(lvd["motion_score"] >= t_f) & (lvd["text_area"] <= p.max_text_area)]
    hq = lvd_f[
        (lvd_f["motion_score"] >= t_hq)
        & (lvd_f["text_area"] <= p.hq.max_text_area)
        & (lvd_f["seconds"] >= p.hq.min_seconds)
    ]
    subsets = {"lvd": lvd, "lvd_f": lvd_f.reset_index(drop=True), "hq": hq.reset_index(drop=True)}
    limits = {
        "lvd": {},
        "lvd_f": {"min_motion_score": t_f, "max_text_area": p.max_text_area},
        "hq": {
            "min_motion_score": t_hq,
            "max_text_area": p.hq.max_text_area,
            "min_seconds": p.hq.min_seconds,
        },
    }
    split = _splits(subsets, p.val_fraction)
    out = {}
    for name, df in subsets.items():
        df = df.assign(split=df["clip"].map(split).astype("string"))
        df.attrs = {"subset": name, "val_fraction": p.val_fraction, **limits[name]}
        out[name] = df
    return out


def _splits(subsets: dict[str, pd.DataFrame], val_fraction: float) -> dict[str, str]:
    """One split per clip for all subsets; subsets are nested, so fixing the smallest first means a
    promotion never takes the last train (or val) clip away from a larger one."""
    h = {c: split_hash(c) for c in subsets["lvd"]["clip"]}
    split = {c: "val" if u < val_fraction else "train" for c, u in h.items()}
    if val_fraction == 0:
        return split
    for df in sorted(subsets.values(), key=len):
        clips = sorted(df["clip"], key=h.__getitem__)
        if len(clips) < 2:
            continue
        if all(split[c] == "train" for c in clips):
            split[clips[0]] = "val"
        if all(split[c] == "val" for c in clips):
            split[clips[-1]] = "train"
    return split


def write_subsets(subsets: dict[str, pd.DataFrame], out: Path) -> None:
    """out/<name>.parquet for each subset and out/summary.json, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, df in subsets.items():
        _atomic(out / f"{name}.parquet", partial(_to_parquet, df))
        counts = df["split"].value_counts()
        summary[name] = {
            "clips": len(df),
            "train": int(counts.get("train", 0)),
            "val": int(counts.get("val", 0)),
            "hours": float(df["seconds"].sum() / 3600),
            **{
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in df.attrs.items()
                if k != "subset"
            },
        }
    _atomic(out / "summary.json", partial(_to_json, summary))


def _to_parquet(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False)


def _to_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2))


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
