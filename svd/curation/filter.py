"""Clip table -> the training subsets LVD, LVD-F and HQ (paper Sec. 3.1, App. E.2.2).

    lvd    every clip that was annotated (status "ok")
    lvd_f  lvd less its near-duplicates (one clip kept per group, svd.curation.duplicates), through
           the `filter.lvd_f` rules: the paper's drop the 25% least-moving clips (a percentile of the
           annotated set, recomputed per dataset), every clip whose text covers more than 7% of the
           frame, the 25% least aesthetic and the 50% least like their caption
    hq     lvd_f through the `filter.hq` rules: the Stage III cut

A rule names a table column (a scorer's, or a base column such as `seconds`) and bounds it: `min`,
`max`, or `drop_lowest` / `drop_highest`, a fraction of LVD, so thresholds of both subsets are on one
scale. A new scorer's columns can be filtered on with no change here. Percentiles are of the clips
that have a value: a clip not scored on a column (no caption to compare with) passes its rule, and a
rule on a column no clip was scored on (its scorer has no weights configured) is skipped and listed
in the subset's `not_scored`, never filled in.

Every subset has a `split` column: "val" when a hash of the clip key (for a near-duplicate, of the
clip kept in its place) falls under `val_fraction`, so a clip and its copies are held out in every
subset or in none, and evaluation never sees a clip that trained an earlier stage. Each subset of
two or more such groups gets at least one of each (val_fraction > 0): the group with the lowest hash
is promoted to val, or the highest demoted to train, in every subset.
The bounds applied are kept in each subset's `attrs` (they survive Parquet) for the checks.
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

from svd.curation.duplicates import near_duplicates
from svd.params import FilterParams, Rule

SUBSETS = ("lvd", "lvd_f", "hq")


def split_hash(clip: str) -> float:
    """Uniform in [0, 1), a pure function of the key: the same on every machine and every run."""
    return int(hashlib.sha256(clip.encode()).hexdigest()[:15], 16) / 16**15


def bounds(lvd: pd.DataFrame, rules: dict[str, Rule]) -> dict[str, tuple[float, float]]:
    """(low, high) per column: the rule's limits tightened by its percentiles of LVD's scored clips.
    A column no clip was scored on (its scorer has no weights configured) bounds nothing."""
    out = {}
    for column, r in sorted(rules.items()):
        if column not in lvd.columns:
            raise KeyError(
                f"filter rule on {column!r}: no such column in the clip table ({sorted(lvd.columns)})"
            )
        values = lvd[column].dropna().to_numpy(float)
        if len(lvd) and not len(values):  # no clip scored: the rule bounds nothing
            out[column] = (-math.inf, math.inf)
            continue
        lo, hi = -math.inf if r.min is None else r.min, math.inf if r.max is None else r.max
        if r.drop_lowest is not None:
            lo = max(lo, float(np.quantile(values, r.drop_lowest))) if len(values) else math.nan
        if r.drop_highest is not None:
            hi = min(hi, float(np.quantile(values, 1 - r.drop_highest))) if len(values) else math.nan
        out[column] = (lo, hi)
    return out


def not_scored(lvd: pd.DataFrame, rules: dict[str, Rule]) -> list[str]:
    """Columns of `rules` that no clip of LVD has a value in: their rules were skipped."""
    return sorted(c for c in rules if len(lvd) and lvd[c].isna().all())


def within(df: pd.DataFrame, limits: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """Rows within every bound; a clip not scored on a column (no caption to compare) passes it."""
    keep = np.ones(len(df), bool)
    for column, (lo, hi) in limits.items():
        v = df[column].to_numpy(float)
        keep &= np.isnan(v) | ((v >= lo) & (v <= hi))
    return df[keep].reset_index(drop=True)


def make_subsets(table: pd.DataFrame, p: FilterParams) -> dict[str, pd.DataFrame]:
    lvd = table[table["status"] == "ok"].reset_index(drop=True)
    lvd = lvd.assign(near_duplicate_of=_copies(lvd, p.near_duplicates))
    limits = {"lvd": {}, "lvd_f": bounds(lvd, p.lvd_f), "hq": bounds(lvd, p.hq)}
    lvd_f = within(lvd[lvd["near_duplicate_of"].isna()], limits["lvd_f"])
    subsets = {"lvd": lvd, "lvd_f": lvd_f, "hq": within(lvd_f, limits["hq"])}
    split = _splits(subsets, p.val_fraction)
    out = {}
    for name, df in subsets.items():
        df = df.assign(split=df["clip"].map(split).astype("string"))
        skipped = not_scored(lvd, getattr(p, name)) if name != "lvd" else []
        df.attrs = {
            "subset": name,
            "val_fraction": p.val_fraction,
            "bounds": limits[name],
            "not_scored": skipped,
        }
        if name == "lvd_f":
            df.attrs["near_duplicates"] = p.near_duplicates
        out[name] = df
    return out


def _copies(lvd: pd.DataFrame, max_distance: dict[str, float] | None) -> pd.Series:
    """Per clip, the clip kept in its place when it is a near-duplicate of it; null otherwise."""
    if max_distance is None:
        return pd.Series(pd.NA, index=lvd.index, dtype="string")
    if "fingerprint" not in lvd.columns:
        raise KeyError(
            "filter.near_duplicates needs the fingerprint scorer (curate.scorers.fingerprint), or null"
        )
    return lvd["clip"].map(near_duplicates(lvd, max_distance)).astype("string")


def groups(df: pd.DataFrame) -> pd.Series:
    """Per clip, its group: the clip kept in its place if it is a near-duplicate, else itself."""
    return df["near_duplicate_of"].fillna(df["clip"]) if "near_duplicate_of" in df else df["clip"]


def _splits(subsets: dict[str, pd.DataFrame], val_fraction: float) -> dict[str, str]:
    """One split per clip for all subsets, and one per group of near-duplicates: a copy in training
    whose original is held out would leak. Subsets are nested, so fixing the smallest first means a
    promotion never takes the last train (or val) group away from a larger one."""
    group = dict(zip(subsets["lvd"]["clip"], groups(subsets["lvd"]), strict=True))
    h = {g: split_hash(g) for g in set(group.values())}
    split = {g: "val" if u < val_fraction else "train" for g, u in h.items()}
    for df in sorted(subsets.values(), key=len) if val_fraction else []:
        keys = sorted({group[c] for c in df["clip"]}, key=h.__getitem__)
        if len(keys) < 2:
            continue
        if all(split[k] == "train" for k in keys):
            split[keys[0]] = "val"
        if all(split[k] == "val" for k in keys):
            split[keys[-1]] = "train"
    return {c: split[g] for c, g in group.items()}


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
            "val_fraction": df.attrs["val_fraction"],
            "bounds": {c: [_finite(lo), _finite(hi)] for c, (lo, hi) in df.attrs["bounds"].items()},
            "not_scored": df.attrs["not_scored"],  # rules skipped: no clip had a value
        }
    _atomic(out / "summary.json", partial(_to_json, summary))


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


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
