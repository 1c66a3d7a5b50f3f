"""What a user looks at after curation and training: how many clips each filter rule dropped, each
filtered score's distribution with its thresholds, frames of the clips each rule dropped, and a
stage's loss curve. Pictures are PNG bytes
(matplotlib's Agg backend, no display), so MLflow and anything else can store them as they are.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Rule:
    subset: str
    parent: str
    column: str
    text: str  # "motion_score in [0.244, inf]"
    dropped: pd.DataFrame  # the parent's rows outside the bounds


def rules(subsets: dict[str, pd.DataFrame], parents: dict[str, str]) -> Iterator[Rule]:
    """Every (subset, rule) with the parent subset's rows the rule alone drops."""
    for name, parent in parents.items():
        base = subsets[parent]
        skipped = subsets[name].attrs.get("not_scored", [])
        for column, (lo, hi) in subsets[name].attrs["bounds"].items():
            v = base[column].to_numpy(float)  # NaN, not scored, is never outside
            text = (
                f"{column}: not scored, rule skipped"
                if column in skipped
                else f"{column} in [{_num(lo)}, {_num(hi)}]"
            )
            yield Rule(name, parent, column, text, base[(v < lo) | (v > hi)])
        if subsets[name].attrs.get("near_duplicates") is not None:
            text = "near_duplicate_of: a copy of a clip kept (filter.near_duplicates)"
            yield Rule(name, parent, "near_duplicate_of", text, base[base["near_duplicate_of"].notna()])


def rule_counts(subsets: dict[str, pd.DataFrame], parents: dict[str, str]) -> list[dict]:
    """One row per (subset, rule): clips of the parent subset the rule alone would drop, and the
    subset's own kept and dropped counts. Rules overlap (a static clip with text fails two), so a
    rule's drops do not sum to the subset's."""
    return [
        {
            "subset": r.subset,
            "from": r.parent,
            "rule": r.text,
            "dropped_by_rule": len(r.dropped),
            "kept": len(subsets[r.subset]),
            "dropped": len(subsets[r.parent]) - len(subsets[r.subset]),
        }
        for r in rules(subsets, parents)
    ]


def histograms(lvd: pd.DataFrame, subsets: dict[str, pd.DataFrame], scores: Sequence[str] = ()) -> bytes:
    """PNG: one panel per score and per filtered column, LVD's values with each subset's bounds
    drawn on them (a score no rule filters shows without)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = sorted({*scores, *(c for df in subsets.values() for c in df.attrs["bounds"])})
    fig, axes = plt.subplots(1, max(len(columns), 1), figsize=(4 * max(len(columns), 1), 3), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=False):
        values = lvd[column].dropna().to_numpy(float)
        ax.set_title(column)
        if len(lvd) and not len(values):  # no weights configured for its scorer: nothing to draw
            ax.text(0.5, 0.5, "not scored", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.hist(values, bins=30, color="0.6")
        for (name, df), colour in zip(subsets.items(), ("C0", "C1", "C2"), strict=False):
            for x in df.attrs["bounds"].get(column, ()):
                if math.isfinite(x):
                    ax.axvline(x, color=colour, label=name)
        ax.set_xlabel(f"LVD, {len(values)} of {len(lvd)} clips scored")
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            unique = dict(zip(labels, handles, strict=True))
            ax.legend(unique.values(), unique.keys(), fontsize="small")
    return _png(fig)


def dropped(
    subsets: dict[str, pd.DataFrame], parents: dict[str, str], per_rule: int = 4
) -> list[tuple[str, pd.DataFrame]]:
    """Per (subset, rule): up to `per_rule` clips of the parent subset that the rule drops, spread
    from the least to the most extreme dropped value."""
    picks = []
    for r in rules(subsets, parents):
        out = r.dropped.sort_values([r.column, "clip"])
        at = np.unique(np.linspace(0, len(out) - 1, min(per_rule, len(out))).round().astype(int))
        picks.append((f"{r.subset}: {r.text}", out.iloc[at]))
    return picks


def dropped_examples(picks: list[tuple[str, pd.DataFrame]], curated: str) -> bytes:
    """PNG: a row per rule of `dropped`'s picks, each clip's middle frame (from the shards) labelled
    with its value: what a threshold throws away, seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from svd.data.shards import read_clips
    from svd.media.io import read_at

    rows = [r for _, df in picks for r in df.itertuples()]
    per_rule = max([len(df) for _, df in picks] + [1])
    middle = {r.clip: read_at(mp4, [r.seconds / 2], [(96, 128)])[0] for r, mp4 in read_clips(curated, rows)}
    fig, axes = plt.subplots(len(picks), per_rule, figsize=(2 * per_rule, 2.2 * len(picks)), squeeze=False)
    for row, (title, df) in zip(axes, picks, strict=True):
        column = title.split(": ")[1].split(" in ")[0]
        for ax, r in zip(row, [*df.itertuples(), *[None] * per_rule], strict=False):
            ax.axis("off")
            if r is not None:
                ax.imshow(middle[r.clip])
                value = getattr(r, column)
                shown = (
                    f"...{value[-10:]}" if isinstance(value, str) else f"{value:.3g}"
                )  # str: the kept clip
                ax.set_title(f"{column} {shown}", fontsize="x-small")
        label = title if len(df) else f"{title}: drops nothing"
        row[0].text(0, 1.3, label, transform=row[0].transAxes, fontsize="small", weight="bold")
    return _png(fig)


def loss_curve(losses: list[float], title: str) -> bytes:
    """PNG: the training loss per step, and its running mean over a tenth of the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="0.7", linewidth=0.8, label="loss")
    k = max(len(losses) // 10, 1)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    ax.plot(steps[k - 1 :], smooth, color="C0", label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _png(fig)


def _png(fig: object) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return buf.getvalue()


def _num(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else ("-inf" if x < 0 else "inf")


def ablation_plot(results: pd.DataFrame) -> bytes:
    """PNG: each arm's validation loss by cut, a line per annotation, the unfiltered baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    arms = results[results["annotation"] != "none"]
    for annotation, df in arms.groupby("annotation", sort=True):
        df = df.sort_values("cut")
        ax.plot(df["cut"], df["val_loss"], marker="o", label=str(annotation))
    for loss in results.loc[results["annotation"] == "none", "val_loss"]:
        ax.axhline(loss, color="0.5", linestyle="--", label="no filter")
    ax.set_xlabel("share of LVD dropped")
    ax.set_ylabel("validation loss (shared held-out clips)")
    ax.set_title("Threshold ablation: lower is better")
    ax.legend(fontsize="small")
    return _png(fig)
