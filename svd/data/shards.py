"""WebDataset tar shards: `<key>.mp4` + `<key>.json` per clip, the clip table as their index.

A shard's bytes are a pure function of its samples: members in the given order, mtime 0, owner 0,
mode 0644, no user or group names, PAX headers only where a name needs them. So the same clips give
the same shard on any machine, whatever the worker count, and DVC hashes do not churn.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any

from svd import storage


def shard_bytes(samples: Iterable[tuple[str, bytes, dict[str, Any]]]) -> bytes:
    """(key, mp4 bytes, metadata) per sample -> an uncompressed tar (video does not compress)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, video, meta in samples:
            if "." in key or "/" in key:
                raise ValueError(f"sample key {key!r}: WebDataset keys may hold no '.' or '/'")
            doc = json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str).encode()
            for name, data in ((f"{key}.mp4", video), (f"{key}.json", doc)):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mp4_ranges(shard: bytes) -> dict[str, tuple[int, int]]:
    """Sample key -> (offset, length) of its mp4 in a shard's bytes."""
    with tarfile.open(fileobj=io.BytesIO(shard), mode="r:") as tar:
        return {m.name.partition(".")[0]: (m.offset_data, m.size) for m in tar if m.name.endswith(".mp4")}


def read_shard(uri: str) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """(key, mp4 bytes, metadata) of every sample of one shard, in order."""
    with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(uri)), mode="r:") as tar:
        video: dict[str, bytes] = {}
        for m in tar:
            f = tar.extractfile(m)
            if f is None:
                continue
            key, _, ext = m.name.partition(".")
            if ext == "mp4":
                video[key] = f.read()
            elif ext == "json":
                yield key, video.pop(key), json.loads(f.read())


def read_clips(out: str, rows: Iterable[Any]) -> Iterator[tuple[Any, bytes]]:
    """(row, mp4 bytes) for table rows (with .shard and .clip), each shard read once, in row order
    within each shard."""
    by_shard: dict[str, list[Any]] = {}
    for r in rows:
        by_shard.setdefault(r.shard, []).append(r)
    for shard, wanted in sorted(by_shard.items()):
        videos = {key: data for key, data, _ in read_shard(storage.join(out, shard))}
        for r in wanted:
            if r.clip not in videos:
                raise KeyError(f"{storage.join(out, shard)}: no sample {r.clip!r}")
            yield r, videos[r.clip]
