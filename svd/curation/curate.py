"""A curation run: list the sources, annotate every video, pack shards and the clip table.

`curate` is the whole run in one process (the `svd curate` command, tests, notebooks); the Prefect
flow maps the same `annotate_video` over a task runner (local processes or Ray) and then calls the
same `write_outputs`, so every runner gives the same bytes:

    <out>/clips.parquet        one row per clip and per video without one (the shards' index)
    <out>/shards/NNNNNN.tar    WebDataset shards, `shard_clips` clips each, in table order

Everything is ordered by the sorted list of sources, never by which worker finished first, and
each output is written whole; outputs that already hold the right bytes are left alone, so a
resumed run rewrites nothing it had finished.
"""

from __future__ import annotations

import hashlib
import io
import logging

import pandas as pd

from svd import storage
from svd.curation import cache, table
from svd.curation.annotate import VideoResult, annotate_video, list_videos
from svd.data.shards import mp4_ranges, shard_bytes
from svd.params import CurateParams

log = logging.getLogger(__name__)


def videos(p: CurateParams) -> dict[str, int]:
    return list_videos(p.sources, exclude=(p.out, p.cache))


def curate(p: CurateParams, seed: int = 0) -> pd.DataFrame:
    """Annotate every source video in this process, then write the outputs."""
    start(p)
    results = [annotate_video(v, p) for v in videos(p)]
    return write_outputs(results, p, seed)


def start(p: CurateParams) -> None:
    """Clear what a killed run left half-written; its finished cache entries stay and are reused."""
    swept = storage.sweep_temporary(p.out) + storage.sweep_temporary(p.cache)
    if swept:
        log.info("removed %d temporary file(s) of an interrupted run", swept)


def write_outputs(results: list[VideoResult], p: CurateParams, seed: int = 0) -> pd.DataFrame:
    """Shards and the clip table from every video's result, in source order."""
    rows: list[dict] = []
    owners: dict[str, str] = {}  # video sha256 -> the first source with that content
    entries: dict[str, str] = {}  # clip key -> the cache entry holding its bytes
    for res in sorted(results, key=lambda res: res.video):
        sha = res.rows[0].get("video_sha256")
        if sha in owners and res.rows[0]["status"] != "failed":
            why = f"{res.video}: same content as {owners[sha]}, whose clips it would repeat"
            rows.append({"video": res.video, "video_sha256": sha, "status": "duplicate", "error": why})
            continue
        if sha is not None:
            owners[sha] = res.video
        rows += res.rows
        entries |= {r["clip"]: res.clips_entry for r in res.rows if r["status"] == "ok" and res.clips_entry}
    keys = [r["clip"] for r in rows if r.get("clip") is not None]
    if len(keys) != len(set(keys)):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"clip keys not unique, nothing written: {dup[:5]}")
    for i, r in enumerate(r for r in rows if r["status"] == "ok"):
        r["shard"] = f"shards/{i // p.shard_clips:06d}.tar"
    df = table.to_table(rows, list(p.scorers))
    df.attrs["seed"] = seed
    ranges = _write_shards(df, entries, p)
    ok = df["status"] == "ok"
    df.loc[ok, "mp4_offset"] = [ranges[k][0] for k in df.loc[ok, "clip"]]
    df.loc[ok, "mp4_bytes"] = [ranges[k][1] for k in df.loc[ok, "clip"]]
    df.loc[ok, "mp4_sha256"] = [ranges[k][2] for k in df.loc[ok, "clip"]]
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    _write(storage.join(p.out, "clips.parquet"), buf.getvalue())
    storage.sweep_temporary(p.out)
    return df


def _write_shards(
    df: pd.DataFrame, entries: dict[str, str], p: CurateParams
) -> dict[str, tuple[int, int, str]]:
    """Write the shards; return each clip's byte range in its shard and its mp4's sha256 (not in the
    shard's own JSON, which it would change)."""
    loaded: dict[str, dict[str, bytes]] = {}
    written: set[str] = set()
    ranges: dict[str, tuple[int, int, str]] = {}
    for shard, group in df[df["status"] == "ok"].groupby("shard", sort=True):
        samples = []
        for row in group.to_dict("records"):
            entry = entries[row["clip"]]
            if entry not in loaded:
                loaded = {entry: cache.clip_bytes(entry)}  # one video's clips in memory at a time
            meta = {
                k: None if pd.isna(v) else getattr(v, "item", lambda v=v: v)()
                for k, v in row.items()
                if k not in ("mp4_offset", "mp4_bytes", "mp4_sha256")
            }
            samples.append((row["clip"], loaded[entry][row["clip"]], meta))
        data = shard_bytes(samples)
        _write(storage.join(p.out, str(shard)), data)
        written.add(storage.name(str(shard)))
        ranges |= {
            k: (o, n, hashlib.sha256(data[o : o + n]).hexdigest()) for k, (o, n) in mp4_ranges(data).items()
        }
    shards = storage.join(p.out, "shards")
    if storage.is_s3(shards) or storage.exists(shards):
        for f in storage.listdir(shards):
            if storage.name(f) not in written:
                storage.remove(f)  # a shard of an earlier run that this table no longer lists
    return ranges


def _write(uri: str, data: bytes) -> None:
    if not storage.same_bytes(uri, data):
        storage.write_bytes(uri, data)
