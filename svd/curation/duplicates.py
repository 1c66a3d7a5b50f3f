"""Near-duplicate clips: the same footage re-encoded, rescaled or cropped, in one video or across
videos (a re-upload, a compilation). Byte-identical files are caught earlier, by content hash (the
`duplicate` status); these differ in every byte and match only in what they show.

Two clips are near-duplicates when the cosine distance (1 - cosine) of their fingerprints
(svd/curation/scorers/fingerprint.py) is within the threshold for the fingerprints' kind: a
thumbnail's and a CLIP embedding's distances differ in scale. Near-duplicates group transitively;
each group keeps one clip, the largest picture, then the longest, then the first key, so the choice
does not depend on the order of the table.

All pairs are compared, in blocks, which suits tables up to some tens of thousands of clips; a
larger corpus wants an approximate nearest-neighbour index in place of `_close_pairs`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from svd.curation.scorers.fingerprint import decode

BLOCK = 2048  # rows compared at once: the distance block stays a few MB


def near_duplicates(clips: pd.DataFrame, max_distance: dict[str, float]) -> dict[str, str]:
    """{clip dropped: clip kept in its place} over rows with a fingerprint; `max_distance` per kind."""
    rows = clips[clips["fingerprint"].notna()].sort_values("clip").reset_index(drop=True)
    if len(rows) < 2:
        return {}
    decoded = [decode(f) for f in rows["fingerprint"]]
    kinds = {k for k, _ in decoded}
    if len(kinds) > 1:
        raise ValueError(
            f"fingerprints of different kinds {sorted(kinds)} cannot be compared: re-run curation"
        )
    kind = kinds.pop()
    if kind not in max_distance:
        raise KeyError(f"filter.near_duplicates has no threshold for {kind!r} fingerprints")
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _close_pairs(np.stack([v for _, v in decoded]), max_distance[kind]):
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    size = rows["width"].astype(float) * rows["height"].astype(float)
    order = np.lexsort((np.arange(len(rows)), -rows["seconds"].to_numpy(float), -size.to_numpy()))
    best: dict[int, int] = {}
    for i in order:  # the first of each group in this order is its keeper
        best.setdefault(root(int(i)), int(i))
    keys = rows["clip"].tolist()
    return {keys[i]: keys[best[root(i)]] for i in range(len(rows)) if best[root(i)] != i}


def _close_pairs(e: np.ndarray, max_distance: float) -> list[tuple[int, int]]:
    """Index pairs (i < j) of rows of `e` within `max_distance` cosine distance."""
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)
    pairs = []
    for lo in range(0, len(e), BLOCK):
        i, j = np.nonzero(1 - e[lo : lo + BLOCK] @ e.T <= max_distance + 1e-6)
        pairs += [(int(a) + lo, int(b)) for a, b in zip(i, j, strict=True) if a + lo < b]
    return pairs
